"""The dataflow as assets: collect -> global -> share -> push, one asset per dataset.

Asset keys are the dataset and table names in DuckDB (`crm_customer`, `global_order`,
`wave_invoice_share`, `push_wave_invoice`): one name per concept. Every asset that
writes the DuckDB file is in the `duckdb` pool, so writers never run at once.
"""


from dataclasses import asdict

import dagster as dg

from crm_wave.defs.resources import CrmResource, StoreResource, WaveResource
from crm_wave.sync.collect import collect, utcnow
from crm_wave.sync.global_step import build_global
from crm_wave.sync.names import ENTITIES, dataset, global_table, share_table
from crm_wave.sync.push import push
from crm_wave.sync.share_step import build_share

SYSTEMS = ("crm", "wave")
POOL = "duckdb"
_TITLES = {"crm": "Custom CRM", "wave": "Wave"}


class CollectConfig(dg.Config):
    """`full: true` forces a full read (detects deletes); by default the first read and one an hour are full."""

    full: bool | None = None


def _client(system: str, crm: CrmResource, wave: WaveResource):
    return crm.client() if system == "crm" else wave.client()


def collect_asset(system: str, entity: str) -> dg.AssetsDefinition:
    """`<system>_<type>`: the append-only dataset of one system's records of one type."""
    name = dataset(system, entity)

    @dg.asset(name=name, group_name="collect", pool=POOL, kinds={"duckdb"},
              description=f"{_TITLES[system]} {name.split('_', 1)[1]}s as read from the API: an append-only log of "
                          f"versions (`{name}`, newest per id in `{name}_current`). Incremental by cursor; "
                          f"full reads detect deletes.")
    def _collect(context: dg.AssetExecutionContext, config: CollectConfig, crm: CrmResource, wave: WaveResource,
                 store: StoreResource) -> dg.MaterializeResult:
        with _client(system, crm, wave) as client:
            result = collect(store.store(), system, entity, client, utcnow(), full=config.full)
        context.log.info(f"{name}: read {result.read}, wrote {result.written} versions (full={result.full})")
        return dg.MaterializeResult(metadata={**asdict(result), "dagster/row_count": result.written})

    return _collect


def global_asset(entity: str) -> dg.AssetsDefinition:
    """`global_<type>`: golden records merged from both systems."""
    deps = [dataset("crm", entity), dataset("wave", entity)]
    if entity == "order":
        deps += [f"push_{dataset(s, e)}" for e in ("customer", "product") for s in SYSTEMS]

    @dg.asset(name=global_table(entity), group_name="global", pool=POOL, deps=deps, kinds={"polars", "duckdb"},
              description=f"Golden {entity}s: CRM and Wave records linked (merge keys, or created by the sync) and "
                          f"merged per field against the last agreed values; conflicts go to `conflicts`.")
    def _global(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
        result = build_global(store.store(), entity, utcnow())
        return dg.MaterializeResult(metadata={**asdict(result), "dagster/row_count": result.golden})

    return _global


def share_asset(target: str, entity: str) -> dg.AssetsDefinition:
    """`<target>_<type>_share`: what must change in the target."""
    name = share_table(target, entity)

    @dg.asset(name=name, group_name="share", pool=POOL, deps=[global_table(entity)], kinds={"polars", "duckdb"},
              description=f"Diff between golden {entity}s and {_TITLES[target]}'s current state: inserts, updates "
                          f"(changed fields only), held deletes, and records waiting on a dependency (with the reason).")
    def _share(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
        result = build_share(store.store(), target, entity)
        return dg.MaterializeResult(metadata={**asdict(result), "work": result.work, "dagster/row_count": result.work})

    return _share


def push_asset(target: str, entity: str) -> dg.AssetsDefinition:
    """`push_<target>_<type>`: the share table's writes, sent."""
    share = share_table(target, entity)
    name = f"push_{dataset(target, entity)}"

    @dg.asset(name=name, group_name="push", pool=POOL, deps=[share], kinds={"python"},
              retry_policy=dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL),
              description=f"Sends `{share}` to {_TITLES[target]}: creates (intent recorded first, new id linked in the "
                          f"same step), patches with optimistic checks; refused records go to `dead_letters`.")
    def _push(context: dg.AssetExecutionContext, crm: CrmResource, wave: WaveResource,
              store: StoreResource) -> dg.MaterializeResult:
        with _client(target, crm, wave) as client:
            result = push(store.store(), target, entity, client, utcnow(), run_id=context.run.run_id,
                          progress=context.log.info)
        for message in result.messages[:50]:
            context.log.warning(message)
        return dg.MaterializeResult(metadata={
            "created": result.created, "updated": result.updated, "failed": result.failed,
            "skipped": result.skipped, "unknown": result.unknown, "dagster/row_count": result.writes})

    return _push


@dg.asset(name="snapshot", group_name="analyst", pool=POOL, kinds={"duckdb"},
          deps=[f"push_{dataset(t, e)}" for e in ENTITIES for t in SYSTEMS],
          description="A read-only copy of the DuckDB file with analyst views (`golden_customers`, `record_links`, "
                      "`entity_history`, `field_conflicts`, `failed_records`, `pending_deletes`, ...), published after "
                      "each sync under `data/snapshots/`. Query it with `crm-wave sql`.")
def snapshot(store: StoreResource) -> dg.MaterializeResult:
    """Publish the snapshot analysts query (the live file is never theirs to open)."""
    from pathlib import Path

    from crm_wave.analyst.snapshot import publish_snapshot

    path = publish_snapshot(store.store(), Path(store.data_dir) / "snapshots", utcnow())
    return dg.MaterializeResult(metadata={"path": str(path)})


COLLECT = [collect_asset(s, e) for e in ENTITIES for s in SYSTEMS]
GLOBAL = [global_asset(e) for e in ENTITIES]
SHARE = [share_asset(t, e) for e in ENTITIES for t in SYSTEMS]
PUSH = [push_asset(t, e) for e in ENTITIES for t in SYSTEMS]

SHARE_TO_PUSH = {share_table(t, e): f"push_{dataset(t, e)}" for e in ENTITIES for t in SYSTEMS}
