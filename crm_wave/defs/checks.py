"""Asset checks: link integrity, both sides present, order totals, open conflicts, unreadable records.

Each is a `StepCheck`: a spec of the `sync_pass` multi-asset and a function of the tenant's store,
evaluated in `sync_pass`'s own step after the stages ran (on the pass's DuckDB session), not as a
step of its own: a run's log shows every stage and check in one step (measured: the 13 steps fewer
did not change a run's CPU, docs/benchmarks.md). The circuit breaker (`assets.BREAKER_CHECKS`) is decided inside
the pass; the dead-letter checks are in `dead_letters.py`.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import dagster as dg

from crm_wave.model.money import currency_exponent, lines_total
from crm_wave.store import Store
from crm_wave.store.unreadable import list_unreadable
from crm_wave.sync.names import ENTITIES, dataset, global_table


#: Records listed in a check's metadata; the count is always whole.
SHOWN = 50


def md_listing(shown: Sequence[str], total: int | None = None, rest: str = "") -> dg.MetadataValue:
    """Markdown list of `shown` (the first of `total` items; `rest` says where the others are), `_none_` for none:
    the records a check or a stage's metadata names."""
    text = "\n".join(f"- {line}" for line in shown)
    if total is not None and total > len(shown):
        text += f"\n- … and {total - len(shown)} more ({rest})"
    return dg.MetadataValue.md(text or "_none_")


@dataclass(frozen=True)
class StepCheck:
    """An asset check evaluated in `sync_pass`'s step: its spec, and its result from the tenant's store."""

    spec: dg.AssetCheckSpec
    evaluate: Callable[[Store], dg.AssetCheckResult]

    def result(self, store: Store) -> dg.AssetCheckResult:
        """The check's result, keyed to its asset and name (a multi-asset's step yields several)."""
        out = self.evaluate(store)
        return out._replace(asset_key=self.spec.asset_key, check_name=self.spec.name)


def links_check(entity: str) -> StepCheck:
    """No record is linked twice, and every linked record was collected on its side."""
    spec = dg.AssetCheckSpec("links_are_sound", asset=global_table(entity),
                             description="No CRM or Wave record belongs to two global entities, and every linked record "
                                         "is present in its collected dataset (deleted ones wait in `pending_deletes`).")

    def _check(store: Store) -> dg.AssetCheckResult:
        with store.connect() as con:
            for system in ("crm", "wave"):
                store.ensure_dataset(con, dataset(system, entity))
            dup = {s: con.execute(f"SELECT count(*) FROM (SELECT {s}_id FROM links WHERE entity = ? AND {s}_id IS NOT NULL "
                                  f"GROUP BY 1 HAVING count(*) > 1)", [entity]).fetchall()[0][0] for s in ("crm", "wave")}
            missing = {s: con.execute(
                f"SELECT count(*) FROM links l LEFT JOIN {dataset(s, entity)}_current d ON d._source_id = l.{s}_id "
                f"WHERE l.entity = ? AND l.{s}_id IS NOT NULL AND d._id IS NULL "
                f"AND l.how NOT LIKE 'created:{s}%'", [entity]).fetchall()[0][0] for s in ("crm", "wave")}
            deleted = {s: con.execute(
                f"SELECT count(*) FROM links l JOIN {dataset(s, entity)}_current d ON d._source_id = l.{s}_id "
                f"WHERE l.entity = ? AND d._deleted", [entity]).fetchall()[0][0] for s in ("crm", "wave")}
        passed = not any(dup.values()) and not any(missing.values())
        return dg.AssetCheckResult(passed=passed, metadata={
            "duplicate_crm_links": dup["crm"], "duplicate_wave_links": dup["wave"],
            "linked_but_never_collected_crm": missing["crm"], "linked_but_never_collected_wave": missing["wave"],
            "deleted_on_crm_side": deleted["crm"], "deleted_on_wave_side": deleted["wave"]})

    return StepCheck(spec, _check)


def order_total_mismatches(store: Store) -> tuple[int, list[str]]:
    """(linked orders compared, "gid: CRM x vs Wave y" for each whose totals differ as decimals)."""
    table = global_table("order")
    with store.connect() as con:
        columns = store.table_columns(con, table) or []
        if "Total__crm" not in columns:
            return 0, []
        both = f"FROM {table} WHERE crm_state = 'present' AND wave_state = 'present'"
        ((compared,),) = con.execute(f"SELECT count(*) {both}").fetchall()
        lines = "Lines, Currency" if {"Lines", "Currency"} <= set(columns) else "NULL, NULL"
        # Equal text is equal; only the rest ("10" against "10.00") is compared as decimals.
        differing = con.execute(f"SELECT global_id, Total__crm, Total__wave, {lines} {both} "
                                "AND Total__crm IS DISTINCT FROM Total__wave ORDER BY global_id").fetchall()
    mismatched = []
    for gid, crm_total, wave_total, lines_cell, currency in differing:
        try:
            equal = Decimal(crm_total or "0") == Decimal(wave_total or "0")
        except InvalidOperation:
            equal = False
        if not equal:
            mismatched.append(f"{gid}: CRM {crm_total} vs Wave {wave_total}{_lines_add_up_to(lines_cell, currency)}")
    return compared, mismatched


def _lines_add_up_to(lines_cell: str | None, currency: str | None) -> str:
    """"; its lines add up to X" by the shared money rule, so the operator sees which side is off."""
    if not lines_cell:
        return ""
    try:
        lines = json.loads(lines_cell)
        total = lines_total(((line["Quantity"], line["UnitPrice"]) for line in lines), currency_exponent(currency))
    except (ValueError, TypeError, KeyError, InvalidOperation):
        return ""
    return f"; its lines add up to {total}"


def _order_totals(store: Store) -> dg.AssetCheckResult:
    """Compare the CRM's computed Total with Wave's `total.value` for linked pairs."""
    compared, mismatched = order_total_mismatches(store)
    return dg.AssetCheckResult(passed=not mismatched, metadata={
        "compared": compared, "mismatched": len(mismatched),
        "examples": dg.MetadataValue.md("\n".join(f"- {m}" for m in mismatched[:20]) or "_none_")})


order_totals_check = StepCheck(
    dg.AssetCheckSpec("order_totals_match_invoices", asset=global_table("order"),
                      description="For every linked order, the CRM's Total equals the Wave invoice's total."),
    _order_totals)


def open_conflicts(store: Store, entity: str) -> list[str]:
    """One line per open conflict-queue item of `entity` (see `crm-wave conflicts`)."""
    from crm_wave.store.queue import list_items
    from crm_wave.sync.conflicts_cli import item_line

    with store.connect() as con:
        return [item_line(i) for i in list_items(con) if i["entity"] == entity]


def conflicts_check(entity: str) -> StepCheck:
    """Warns while field differences of `entity` wait in the conflict queue for a person."""
    spec = dg.AssetCheckSpec("open_conflicts", asset=global_table(entity),
                             description="Field differences waiting for a person (policy `review`, the first sync); "
                                         "decide them with `crm-wave conflicts resolve`. Other records sync meanwhile.")

    def _check(store: Store) -> dg.AssetCheckResult:
        lines = open_conflicts(store, entity)
        return dg.AssetCheckResult(passed=not lines, severity=dg.AssetCheckSeverity.WARN, metadata={
            "open": len(lines),
            "conflicts": dg.MetadataValue.md("\n".join(f"- {line}" for line in lines[:50]) or "_none_"),
            "decide": "crm-wave conflicts resolve ID --take crm|wave|newest (or --value TEXT; --all)"})

    return StepCheck(spec, _check)


def readable_check(entity: str) -> StepCheck:
    """Warns while the global step holds records of `entity` it cannot read (`crm_wave.store.unreadable`)."""
    spec = dg.AssetCheckSpec("records_are_readable", asset=global_table(entity),
                             description=f"Warns while {entity} records cannot be read (an order's lines that are not a "
                                         "list of objects): each is held at its last readable version, or left out, "
                                         "until it is fixed at its source. Lists each with the field.")

    def _check(store: Store) -> dg.AssetCheckResult:
        with store.connect() as con:
            held = list_unreadable(con, entity)
        listing = md_listing([f"{u.message} _(since {u.first_seen:%Y-%m-%d %H:%M} UTC)_" for u in held[:SHOWN]],
                             len(held), "table `unreadable_records`")
        return dg.AssetCheckResult(
            passed=not held, severity=dg.AssetCheckSeverity.WARN,
            description=f"{len(held)} {entity} record(s) cannot be read" if held else "none",
            metadata={"unreadable": len(held), "records": listing})

    return StepCheck(spec, _check)


#: The checks of the golden tables.
CHECKS = [*[links_check(e) for e in ENTITIES], *[conflicts_check(e) for e in ENTITIES],
          *[readable_check(e) for e in ENTITIES], order_totals_check]
