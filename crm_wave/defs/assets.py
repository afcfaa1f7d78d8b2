"""The dataflow as assets: collect -> global -> share -> push (-> snapshot), partitioned by tenant.

Asset keys are the dataset and table names in DuckDB (`crm_customer`, `global_order`,
`wave_invoice_share`, `push_wave_invoice`): one name per concept. Each tenant has its
own DuckDB file, so different tenants run in parallel; within one tenant, writers are
serialised by the file's lock and by the per-tenant run limit (tag `tenant`).
"""

from dataclasses import asdict
from datetime import timedelta

import dagster as dg

from crm_wave.defs.resources import SyncResource
from crm_wave.defs.table_meta import OWNERS, recorded_conflicts, table_metadata
from crm_wave.store.db import Store
from crm_wave.sync.collect import collect, utcnow
from crm_wave.sync.global_step import build_global
from crm_wave.sync.names import ENTITIES, dataset, global_table, share_table
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share

SYSTEMS = ("crm", "wave")
TENANTS = dg.DynamicPartitionsDefinition(name="tenants")
_TITLES = {"crm": "Custom CRM", "wave": "Wave"}
#: A collect older than this is stale (the schedule runs every minute).
COLLECT_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=5))


class CollectConfig(dg.Config):
    """`full: true` forces a full read (detects deletes); by default the first read and one an hour are full."""

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


def collect_asset(system: str, entity: str) -> dg.AssetsDefinition:
    """`<system>_<type>`: the append-only dataset of one system's records of one type."""
    name = dataset(system, entity)

    @dg.asset(name=name, group_name="collect", partitions_def=TENANTS, kinds={"duckdb"}, owners=OWNERS,
              freshness_policy=COLLECT_FRESHNESS,
              description=f"{_TITLES[system]} {name.split('_', 1)[1]}s as read from the API: an append-only log of "
                          f"versions (`{name}`, newest per id in `{name}_current`). Incremental by cursor; "
                          f"full reads detect deletes.")
    def _collect(context: dg.AssetExecutionContext, config: CollectConfig, sync: SyncResource) -> dg.MaterializeResult:
        tenant = context.partition_key
        with sync.client(system, tenant) as client:
            result = collect(sync.store(tenant), system, entity, client, utcnow(), full=config.full)
        context.log.info(f"{name}: read {result.read}, wrote {result.written} versions (full={result.full})")
        return dg.MaterializeResult(metadata={**asdict(result), **table_metadata(  # row count: records held
            sync.store(tenant), name, count_from=f"{name}_current WHERE NOT _deleted")})

    return _collect


def global_asset(entity: str) -> dg.AssetsDefinition:
    """`global_<type>`: golden records merged from both systems."""
    deps = [dataset("crm", entity), dataset("wave", entity)]
    if entity == "order":
        deps += [f"push_{dataset(s, e)}" for e in ("customer", "product") for s in SYSTEMS]

    @dg.asset(name=global_table(entity), group_name="global", partitions_def=TENANTS, deps=deps, owners=OWNERS,
              kinds={"polars", "duckdb"},
              description=f"Golden {entity}s: CRM and Wave records linked (merge keys, or created by the sync) and "
                          f"merged per field against the last agreed values; conflicts go to `conflicts`.")
    def _global(context: dg.AssetExecutionContext, sync: SyncResource) -> dg.MaterializeResult:
        store = sync.store(context.partition_key)
        result = build_global(store, entity, utcnow())
        return dg.MaterializeResult(metadata={**asdict(result), **table_metadata(store, global_table(entity)),
                                              "conflicts": recorded_conflicts(store, entity),
                                              "conflicts_this_run": result.conflicts,
                                              "preview": _preview(store, global_table(entity))})

    return _global


def share_asset(target: str, entity: str) -> dg.AssetsDefinition:
    """`<target>_<type>_share`: what must change in the target."""
    name = share_table(target, entity)

    @dg.asset(name=name, group_name="share", partitions_def=TENANTS, deps=[global_table(entity)], owners=OWNERS,
              kinds={"polars", "duckdb"},
              description=f"Diff between golden {entity}s and {_TITLES[target]}'s current state: inserts, updates "
                          f"(changed fields only), held deletes, and records waiting on a dependency (with the reason).")
    def _share(context: dg.AssetExecutionContext, sync: SyncResource) -> dg.MaterializeResult:
        store = sync.store(context.partition_key)
        result = build_share(store, target, entity)
        return dg.MaterializeResult(metadata={
            **asdict(result), "work": result.work, **table_metadata(store, name),
            "preview": _preview(store, name, ["op", "global_id", "target_id", "changes", "reason"])})

    return _share


def push_asset(target: str, entity: str) -> dg.AssetsDefinition:
    """`push_<target>_<type>`: the share table's writes, sent."""
    share = share_table(target, entity)
    name = f"push_{dataset(target, entity)}"

    @dg.asset(name=name, group_name="push", partitions_def=TENANTS, deps=[share], kinds={"python"}, owners=OWNERS,
              retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
              description=f"Sends `{share}` to {_TITLES[target]}: creates (intent recorded first, new id linked in the "
                          f"same step), patches with optimistic checks; refused records go to `dead_letters`.")
    def _push(context: dg.AssetExecutionContext, sync: SyncResource) -> dg.MaterializeResult:
        tenant = context.partition_key
        with sync.client(target, tenant) as client:
            result = push(sync.store(tenant), target, entity, client, utcnow(), run_id=context.run.run_id,
                          progress=context.log.info)
        for message in result.messages[:50]:
            context.log.warning(message)
        return dg.MaterializeResult(metadata={
            "created": result.created, "updated": result.updated, "failed": result.failed,
            "skipped": result.skipped, "parked": result.parked, "recovered": result.recovered,
            "unknown": result.unknown, "writes": result.writes,
            "messages": dg.MetadataValue.md("\n".join(f"- {m}" for m in result.messages[:20]) or "_none_")})

    return _push


@dg.asset(name="snapshot", group_name="analyst", partitions_def=TENANTS, kinds={"duckdb"}, owners=OWNERS,
          deps=[f"push_{dataset(t, e)}" for e in ENTITIES for t in SYSTEMS]
          + [share_table(t, e) for e in ENTITIES for t in SYSTEMS],  # ordered after share in `collect_job` too
          description="A read-only copy of the DuckDB file with analyst views (`golden_customers`, `record_links`, "
                      "`entity_history`, `field_conflicts`, `failed_records`, `pending_deletes`, ...), published after "
                      "each sync under `<data>/snapshots/`. Query it with `crm-wave sql`.")
def snapshot(context: dg.AssetExecutionContext, sync: SyncResource) -> dg.MaterializeResult:
    """Publish the snapshot analysts query (the live file is never theirs to open)."""
    from crm_wave.analyst.snapshot import publish_now

    store = sync.store(context.partition_key)
    path = publish_now(store)  # retention: crm_wave.analyst.snapshot.Retention
    return dg.MaterializeResult(metadata={"path": str(path)})


COLLECT = [collect_asset(s, e) for e in ENTITIES for s in SYSTEMS]
GLOBAL = [global_asset(e) for e in ENTITIES]
SHARE = [share_asset(t, e) for e in ENTITIES for t in SYSTEMS]
PUSH = [push_asset(t, e) for e in ENTITIES for t in SYSTEMS]

SHARE_TO_PUSH = {share_table(t, e): f"push_{dataset(t, e)}" for e in ENTITIES for t in SYSTEMS}
