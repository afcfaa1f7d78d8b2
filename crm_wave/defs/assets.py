"""The dataflow as assets: collect -> global -> share -> push (-> snapshot), partitioned by tenant.

Every stage of `crm_wave/sync/stages.py` is an asset, keyed by its dataset or table name in
DuckDB (`crm_customer`, `global_order`, `wave_invoice_share`, `push_wave_invoice`): one name
per concept. They are the outputs of one subsettable multi-asset, `sync_pass`, whose single
step runs the selected stages through the engine (`sync/engine.py`) on one DuckDB connection
and one pair of clients, and reports each stage as its asset's materialization: the lineage
shows every stage, and a run costs one step instead of one per stage. Each tenant has its own
DuckDB file, so different tenants run in parallel; within one tenant, writers are serialised
by the file's lock and by the per-tenant run limit (tag `tenant`).
"""

from collections.abc import Iterator
from dataclasses import asdict
from datetime import timedelta
from typing import Any

import dagster as dg

from crm_wave.defs import checks, dead_letters
from crm_wave.defs.resources import SyncResource
from crm_wave.defs.table_meta import OWNERS, recorded_conflicts, table_metadata
from crm_wave.store.db import Store
from crm_wave.sync.breaker import CircuitOpen, breaker_state
from crm_wave.sync.collect import CollectResult, utcnow
from crm_wave.sync.engine import StageResult, report_stage, run_pass
from crm_wave.sync.global_step import GlobalResult
from crm_wave.sync.push import PushResult
from crm_wave.sync.share_step import ShareResult
from crm_wave.sync.stages import STAGES, Stage

#: The dynamic partitions of every asset: one key per tenant.
TENANT_PARTITIONS = "tenants"
TENANTS = dg.DynamicPartitionsDefinition(name=TENANT_PARTITIONS)
_TITLES = {"crm": "Custom CRM", "wave": "Wave"}
#: A collect older than this is stale (the schedule runs every minute).
COLLECT_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=5))


class PassConfig(dg.Config):
    """`full: true` makes the collects full reads (detects deletes); by default the first read and one an hour are."""

    full: bool | None = None


def _preview(store: Store, table: str, columns: list[str] | None = None, n: int = 10) -> dg.MetadataValue:
    """The first rows of `table` as a Markdown table (read with LIMIT: a large table is not loaded)."""
    with store.connect() as con:
        if columns is None:  # golden tables: the first merged fields (not the per-side columns)
            columns = [c for c in (store.table_columns(con, table) or []) if "__" not in c][:8]
        head = store.head(con, table, columns, n)
    if head is None or head.height == 0:
        return dg.MetadataValue.md("_empty_")
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join(str(v)[:60].replace("|", "\\|") for v in row) + " |")
    return dg.MetadataValue.md("\n".join(lines))


#: Asset keys of the stages, by kind.
COLLECT, GLOBAL, SHARE, PUSH = ([s.name for s in STAGES if s.kind == k] for k in ("collect", "global", "share", "push"))
SHARE_TO_PUSH = {s.deps[0]: s.name for s in STAGES if s.kind == "push"}

_KINDS = {"collect": {"duckdb"}, "global": {"polars", "duckdb"}, "share": {"polars", "duckdb"}, "push": {"python"}}
#: One asset group: with more than one, Dagster's lineage opens on collapsed group boxes (it expands
#: only the groups named in its `?expanded=` URL or saved in the browser). The stage is a kind (a
#: badge on every node of the graph) and the tag `stage` (`tag:stage=push` in the asset selection).
GROUP = "sync"


def _description(s: Stage) -> str:
    if s.kind == "collect":
        return (f"{_TITLES[s.system or '']} {s.name.split('_', 1)[1]}s as read from the API: an append-only log of "
                f"versions (`{s.name}`, newest per id in `{s.name}_current`). Incremental by cursor; full reads "
                f"detect deletes.")
    if s.kind == "global":
        return (f"Golden {s.entity}s: CRM and Wave records linked (merge keys, or created by the sync) and merged per "
                f"field against the last agreed values; conflicts go to `conflicts`.")
    if s.kind == "share":
        return (f"Diff between golden {s.entity}s and {_TITLES[s.system or '']}'s current state: inserts, updates "
                f"(changed fields only), held deletes, and records waiting on a dependency (with the reason).")
    return (f"Sends `{s.deps[0]}` to {_TITLES[s.system or '']}: creates (intent recorded first, new id linked in the "
            f"same step), patches with optimistic checks; refused records go to `dead_letters`.")


def _spec(s: Stage) -> dg.AssetSpec:
    return dg.AssetSpec(s.name, deps=s.deps, group_name=GROUP, kinds=_KINDS[s.kind] | {s.kind}, tags={"stage": s.kind},
                        description=_description(s),
                        partitions_def=TENANTS, skippable=s.kind == "push", owners=OWNERS,
                        freshness_policy=COLLECT_FRESHNESS if s.kind == "collect" else None)


#: The circuit breaker of each share table: blocking, so a run whose breaker held a push fails
#: (and `crm-wave sync` exits 3) after the rest of the pass has run.
BREAKER_CHECKS = [dg.AssetCheckSpec("circuit_breaker", asset=s.name, blocking=True,
                                    description="Holds the push when it would overwrite or delete over 20% (and over "
                                                "50) of the target's records, until `crm-wave confirm`.")
                  for s in STAGES if s.kind == "share"]
#: The other checks, evaluated in the same step after the stages ran (see `checks.StepCheck`).
STEP_CHECKS = [*checks.CHECKS, *dead_letters.CHECKS]


def _metadata(store: Store, s: Stage, result: StageResult) -> dict[str, Any]:
    """What the UI shows of one stage's result."""
    if isinstance(result, CollectResult):  # row count: the records the dataset holds, not this run's versions
        return {**asdict(result), **table_metadata(store, s.name, count_from=f"{s.name}_current WHERE NOT _deleted"),
                "skipped": checks.md_listing(result.skipped[:20])}
    if isinstance(result, GlobalResult):
        return {**asdict(result), **table_metadata(store, s.name), "conflicts": recorded_conflicts(store, s.entity),
                "conflicts_this_run": result.conflicts, "preview": _preview(store, s.name),
                "unreadable": checks.md_listing(result.unreadable[:20])}
    if isinstance(result, ShareResult):
        return {**asdict(result), "work": result.work, **table_metadata(store, s.name),
                "preview": _preview(store, s.name, ["op", "global_id", "target_id", "changes", "reason"])}
    assert isinstance(result, PushResult)
    return {"created": result.created, "updated": result.updated, "failed": result.failed, "skipped": result.skipped,
            "parked": result.parked, "recovered": result.recovered, "unknown": result.unknown, "writes": result.writes,
            "messages": checks.md_listing(result.messages[:20])}


def _breaker_result(store: Store, s: Stage) -> dg.AssetCheckResult:
    state = breaker_state(store, s.system or "", s.entity)
    return dg.AssetCheckResult(asset_key=s.name, check_name="circuit_breaker", passed=not state.open,
                               description=state.describe(),
                               metadata={"changes": state.changes, "target_size": state.target_size,
                                         "confirmed": state.confirmed})


@dg.multi_asset(name="sync_pass", specs=[_spec(s) for s in STAGES], check_specs=BREAKER_CHECKS + [c.spec for c in STEP_CHECKS],
                can_subset=True,
                partitions_def=TENANTS,
                description="One pass of the sync for one tenant: the selected stages of `crm_wave/sync/stages.py` "
                            "(collect -> global -> share -> push), in one step with one DuckDB connection.")
def sync_pass(context: dg.AssetExecutionContext, config: PassConfig, sync: SyncResource) -> Iterator[Any]:
    """Run the selected stages through the engine; report each as its asset's materialization, then the checks."""
    tenant = context.partition_key
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    check_keys = set(context.selected_asset_check_keys)
    breakers = {k.asset_key.to_user_string() for k in check_keys if k.name == "circuit_breaker"}
    store = sync.store(tenant)
    events: list[Any] = []

    def on_stage(s: Stage, result: StageResult | CircuitOpen) -> None:
        report_stage(s, result, context.log.info, context.log.warning)
        if not isinstance(result, CircuitOpen):
            events.append(dg.MaterializeResult(asset_key=s.name, metadata=_metadata(store, s, result)))
        if s.kind == "share" and s.name in breakers:
            events.append(_breaker_result(store, s))

    held = False
    with store.session():  # the checks read on the pass's connection
        if selected:  # none when the UI runs checks alone
            with sync.client("crm", tenant) as crm, sync.client("wave", tenant) as wave:
                held = bool(run_pass(store, {"crm": crm, "wave": wave}, now=utcnow(), full=config.full,
                                     run_id=context.run.run_id, only=selected, progress=context.log.info,
                                     on_stage=on_stage).held)
        events.extend(c.result(store) for c in STEP_CHECKS if c.spec.key in check_keys)
    if held:  # the run fails on the breaker check: the operator reviews `planned_writes` in a snapshot of now
        from crm_wave.analyst.snapshot import publish_now

        publish_now(store)
    yield from events


@dg.asset(name="snapshot", group_name=GROUP, partitions_def=TENANTS, kinds={"duckdb", "analyst"}, owners=OWNERS,
          tags={"stage": "analyst"},
          deps=PUSH + SHARE,  # ordered after share in `collect_job` too
          description="A read-only copy of the DuckDB file with analyst views (`golden_customers`, `record_links`, "
                      "`entity_history`, `field_conflicts`, `failed_records`, `pending_deletes`, ...), published after "
                      "each sync under `<data>/snapshots/`. Query it with `crm-wave sql`.")
def snapshot(context: dg.AssetExecutionContext, sync: SyncResource) -> dg.MaterializeResult:
    """Publish the snapshot analysts query (the live file is never theirs to open)."""
    from crm_wave.analyst.snapshot import publish_now

    store = sync.store(context.partition_key)
    path = publish_now(store)  # retention: crm_wave.analyst.snapshot.Retention
    return dg.MaterializeResult(metadata={"path": str(path)})
