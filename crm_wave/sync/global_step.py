"""Global: link the two systems' records and merge them into golden records (`global-<type>`).

Reads both collected datasets, maps them to canonical records (references translated to
global ids through the link tables), links unlinked records by the merge keys, merges
per field against the agreed values, and stores the golden table, new links, agreed
values and conflicts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from crm_wave.logic.intents import intent_key
from crm_wave.logic.link import link_records
from crm_wave.logic.merge import merge_records
from crm_wave.mapping.canonical import canonical_fields, crm_to_canonical, person_name, wave_to_canonical
from crm_wave.mapping.flows import flows_for
from crm_wave.mapping.normalize import canonical
from crm_wave.store.db import Store
from crm_wave.sync.cells import to_cell
from crm_wave.sync.names import dataset, global_table

__all__ = ["GlobalResult", "build_global", "merge_fields", "one_way_fields"]


@dataclass(frozen=True)
class GlobalResult:
    """Counts of one global step."""

    entity: str
    golden: int
    new_links: int
    merged_by_key: int
    conflicts: int


def merge_fields(entity: str) -> list[str]:
    """Canonical fields merged for an entity stem."""
    return list(canonical_fields(entity))


def one_way_fields(entity: str) -> frozenset[str]:
    """Fields that only flow Wave -> CRM."""
    return frozenset(n for n, f in canonical_fields(entity).items() if f.direction == "wave_to_crm")


def _ref_maps(links_by_entity: dict[str, pl.DataFrame], system: str) -> dict[str, dict[str, str]]:
    col = f"{system}_id"
    return {
        e: dict(zip(df[col].to_list(), df["global_id"].to_list()))
        for e, df in links_by_entity.items()
        if df.height
    }


def _translate(entity: str, rec: dict, refs: dict[str, dict[str, str]], system: str) -> None:
    if entity != "order":
        return
    cust = rec.get("CustomerId")
    if cust is not None:
        rec["CustomerId"] = refs.get("customer", {}).get(cust, f"unlinked:{system}:{cust}")
    for line in rec.get("Lines") or []:
        pid = line.get("ProductId")
        if pid is not None:
            line["ProductId"] = refs.get("product", {}).get(pid, f"unlinked:{system}:{pid}")


def canonical_frame(raw: pl.DataFrame, system: str, entity: str, refs: dict[str, dict[str, str]]) -> pl.DataFrame:
    """Canonical cells of a collected dataset's current records, plus merge-key columns."""
    fields = merge_fields(entity)
    to_canonical = crm_to_canonical if system == "crm" else wave_to_canonical
    keys = [(k.crm, k.kind) for k in flows_for(entity)[0].merge_keys]
    rows = []
    for sid, deleted, modified, body in raw.select("_source_id", "_deleted", "_modified", "body").iter_rows():
        rec = to_canonical(entity, json.loads(body)) if body and not deleted else {}
        _translate(entity, rec, refs, system)
        row = [sid, bool(deleted), modified, *[to_cell(rec.get(f)) for f in fields]]
        row += [rec.get("Type")] if entity == "customer" else []
        row += [canonical(kind, rec.get(k)) for k, kind in keys]
        rows.append(row)
    schema = {f"{system}_id": pl.String, "deleted": pl.Boolean, "modified": pl.String, **{f: pl.String for f in fields}}
    if entity == "customer":
        schema["Type"] = pl.String
    schema.update({f"_key_{k}": pl.String for k, _ in keys})
    return pl.DataFrame(rows, schema=schema, orient="row")


def _recover_intents(store: Store, entity: str, links: pl.DataFrame, frames: dict[str, pl.DataFrame],
                     now: datetime) -> int:
    """Link records created by a push whose response was lost to the intent that created them."""
    recovered = 0
    with store.connect() as con:
        for system, frame in frames.items():
            pending = store.pending_intents(con, system, entity)
            if not pending:
                continue
            col = f"{system}_id"
            linked = set(links[col].drop_nulls().to_list())
            by_key: dict[tuple, str] = {}
            for row in frame.filter(~pl.col("deleted")).iter_rows(named=True):
                if row[col] not in linked:
                    key = intent_key(entity, row)
                    if key is not None:
                        by_key.setdefault(key, row[col])
            for gid, (_key, payload, _at) in pending.items():
                key = intent_key(entity, payload)
                found = by_key.pop(key, None) if key is not None else None
                if found is None:
                    continue
                side = (found, None) if system == "crm" else (None, found)
                store.upsert_links(con, entity, [(gid, side[0], side[1], f"created:{system} (recovered)")], now)
                store.clear_intent(con, system, entity, gid)
                recovered += 1
    return recovered


def build_global(store: Store, entity: str, now: datetime) -> GlobalResult:
    """Run the global step of `entity` (stem); dependencies' links must exist first."""
    fields = merge_fields(entity)
    flow = flows_for(entity)[0]
    naive_now = now.replace(tzinfo=None)
    with store.connect() as con:
        crm_raw = store.read_current(con, dataset("crm", entity))
        wave_raw = store.read_current(con, dataset("wave", entity))
        links = store.read_links(con, entity)
        dep_links = {e: store.read_links(con, e) for e in ("customer", "product")} if entity == "order" else {}
        agreed = store.read_agreed(con, entity)
    crm = canonical_frame(crm_raw, "crm", entity, _ref_maps(dep_links, "crm"))
    wave = canonical_frame(wave_raw, "wave", entity, _ref_maps(dep_links, "wave"))
    # Merge keys compare the CRM key's kind on both sides (e.g. trimmed, case-insensitive).
    wave = wave.with_columns(
        *[pl.col(k.crm).map_elements(lambda v, kind=k.kind: canonical(kind, v), return_dtype=pl.String).alias(f"_key_{k.crm}")
          for k in flow.merge_keys]
    )
    _recover_intents(store, entity, links, {"crm": crm, "wave": wave}, naive_now)
    with store.connect() as con:
        links = store.read_links(con, entity)
    crm_keyed = crm.rename({f"_key_{k.crm}": f"_kc_{k.crm}" for k in flow.merge_keys})
    wave_keyed = wave.rename({f"_key_{k.crm}": f"_kw_{k.crm}" for k in flow.merge_keys})
    new_links, dropped = link_records(
        entity, links, crm_keyed, wave_keyed, [(f"_kc_{k.crm}", f"_kw_{k.crm}") for k in flow.merge_keys]
    )
    with store.connect() as con:
        if dropped:
            con.executemany("DELETE FROM links WHERE entity = ? AND global_id = ?", [(entity, g) for g in dropped])
        store.upsert_links(
            con, entity,
            [(r["global_id"], r["crm_id"], r["wave_id"], r["how"].replace("_kc_", "").replace("_kw_", ""))
             for r in new_links.iter_rows(named=True)],
            naive_now,
        )
        links = store.read_links(con, entity)
    agreed_frame = pl.DataFrame(
        [[g, *[vals.get(f) for f in fields]] for g, vals in agreed.items()],
        schema={"global_id": pl.String, **{f: pl.String for f in fields}}, orient="row",
    )
    result = merge_records(links, crm, wave, agreed_frame, fields, one_way_fields(entity))
    merged = result.merged
    if entity == "customer":
        types = crm.select("crm_id", pl.col("Type").alias("Type__crm"))
        wtypes = wave.select("wave_id", pl.col("Type").alias("Type__wave"))
        merged = merged.join(types, on="crm_id", how="left").join(wtypes, on="wave_id", how="left")
        merged = merged.with_columns(
            pl.when(pl.col("crm_state") != "absent").then(pl.col("Type__crm")).otherwise(pl.col("Type__wave")).alias("Type")
        )
        merged = merged.with_columns(
            pl.when(pl.col("Type") == "person")
            .then(pl.struct("FirstName", "LastName").map_elements(
                lambda s: person_name(s["FirstName"], s["LastName"]), return_dtype=pl.String))
            .otherwise(pl.col("Name")).alias("Name")
        )
    conflicts = result.conflicts
    if entity == "customer" and conflicts.height:
        persons = merged.filter(pl.col("Type") == "person").select("global_id")
        conflicts = conflicts.join(persons.with_columns(pl.lit(True).alias("_p")), on="global_id", how="left").filter(
            ~((pl.col("field") == "Name") & pl.col("_p").fill_null(False))).drop("_p")
    with store.connect() as con:
        store.replace_table(con, global_table(entity), merged)
        n_conflicts = store.record_conflicts(con, entity, conflicts.iter_rows(named=True), naive_now)
        store.upsert_agreed(
            con, entity,
            {r["global_id"]: {k: v for k, v in r.items() if k != "global_id"} for r in result.agreed.iter_rows(named=True)},
            naive_now,
        )
    return GlobalResult(
        entity=entity,
        golden=merged.height,
        new_links=new_links.height,
        merged_by_key=new_links.filter(pl.col("how").str.starts_with("merge:")).height,
        conflicts=n_conflicts,
    )
