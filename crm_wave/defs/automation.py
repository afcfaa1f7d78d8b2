"""Jobs, the collect schedule and the sensors, every one of them per tenant.

- `tenants_sensor` keeps the `tenants` partitions equal to the tenant registry.
- `collect_schedule` materializes collect -> global -> share for every tenant each minute.
- `push_sensor` launches, per tenant, the push of every share asset whose latest
  materialization reported work, plus what follows it (orders need customers and
  products pushed first).
Every run carries the tag `tenant`, so the run queue can limit runs per tenant (one
at a time, see `deploy/dagster.yaml`) while different tenants run in parallel.
"""

import os
from pathlib import Path

import dagster as dg

from crm_wave.defs.assets import COLLECT, GLOBAL, PUSH, SHARE, SHARE_TO_PUSH, TENANTS, snapshot
from crm_wave.defs.resources import SyncResource
from crm_wave.tenants import load_tenants

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.assets(*COLLECT, *GLOBAL, *SHARE, *PUSH, snapshot),
    description="One full pass for one tenant: collect -> global -> share -> push, for all four dataflows; then a snapshot.",
    executor_def=dg.in_process_executor,
)

collect_job = dg.define_asset_job(
    "collect_job",
    selection=dg.AssetSelection.assets(*COLLECT, *GLOBAL, *SHARE),
    description="Collect both systems and recompute golden records and share diffs (writes nothing to the systems).",
    executor_def=dg.in_process_executor,
)

#: What the push sensor launches: a subset of these assets (the pushes with work and what
#: follows them). In one process: with Dagster's default executor every step would start
#: its own Python process (about 3 s of imports each), which made a push run of 15 steps
#: take minutes instead of seconds on a busy 2-core machine.
push_job = dg.define_asset_job(
    "push_job",
    selection=dg.AssetSelection.assets(*PUSH).downstream(),
    description="Push share rows to the systems (launched by `push_sensor` with the pushes that have work), "
                "then what follows them: orders re-merged once customers and products are linked, and a snapshot.",
    executor_def=dg.in_process_executor,
)


@dg.sensor(name="tenants_sensor", minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Adds and removes `tenants` partitions to match the tenant registry (`crm-wave tenants`).")
def tenants_sensor(context: dg.SensorEvaluationContext, sync: SyncResource):
    """Reconcile the dynamic partitions with the registry file."""
    wanted = {t.name for t in load_tenants(Path(sync.data_root), os.environ)}
    have = set(context.instance.get_dynamic_partitions(TENANTS.name))
    requests = []
    if wanted - have:
        requests.append(TENANTS.build_add_request(sorted(wanted - have)))
    if have - wanted:
        requests.append(TENANTS.build_delete_request(sorted(have - wanted)))
    return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason=None if requests else "tenants unchanged")


_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED]


def _busy(instance: dg.DagsterInstance, tenant: str) -> bool:
    """A run of this tenant is queued or running: another request would only lengthen the queue."""
    return bool(instance.get_run_ids(filters=dg.RunsFilter(tags={"tenant": tenant}, statuses=_ACTIVE), limit=1))


@dg.schedule(name="collect_schedule", job=collect_job, cron_schedule="* * * * *",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every minute, for every tenant: read both systems' changes and recompute the diffs.")
def collect_schedule(context: dg.ScheduleEvaluationContext):
    """One run per tenant, unless that tenant already has a run queued or in progress."""
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    for tenant in context.instance.get_dynamic_partitions(TENANTS.name):
        if _busy(context.instance, tenant):
            continue
        yield dg.RunRequest(run_key=f"collect-{tenant}-{stamp}", partition_key=tenant, tags={"tenant": tenant})


def _latest(instance: dg.DagsterInstance, key: str, tenant: str):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key),
                                                                    asset_partitions=[tenant]), limit=1).records
    return records[0] if records else None


@dg.sensor(name="push_sensor", minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
           job=push_job,
           description="Launches a tenant's pushes when one of its share assets' latest materialization has work.")
def push_sensor(context: dg.SensorEvaluationContext):
    """Look only at materialization metadata (never at DuckDB) and decide whether to push."""
    seen = dict(item.split("=", 1) for item in (context.cursor or "").split(",") if "=" in item)
    cursor, requests = dict(seen), []
    for tenant in context.instance.get_dynamic_partitions(TENANTS.name):
        to_push = []
        for share_key, push_key in SHARE_TO_PUSH.items():
            record = _latest(context.instance, share_key, tenant)
            if record is None:
                continue
            mark = f"{tenant}/{share_key}"
            work = record.asset_materialization.metadata.get("work")
            if seen.get(mark) != str(record.storage_id) and work is not None and work.value > 0:
                to_push.append(push_key)
            cursor[mark] = str(record.storage_id)
        if to_push:
            # The pushes, and what depends on them (customers and products pushed -> orders re-merged and pushed).
            keys = dg.AssetSelection.assets(*to_push).downstream().resolve(context.repository_def.asset_graph)
            requests.append(dg.RunRequest(run_key=f"push-{tenant}-{'-'.join(cursor.get(f'{tenant}/{k}', '') for k in SHARE_TO_PUSH)}",
                                          asset_selection=sorted(keys), partition_key=tenant, tags={"tenant": tenant}))
    context.update_cursor(",".join(f"{k}={v}" for k, v in sorted(cursor.items())))
    return requests or dg.SkipReason("no share asset has work")
