"""Jobs, the collect schedule and the push sensor.

The schedule materializes collect -> global -> share; the sensor launches the push of
every share asset whose latest materialization reported work, plus what follows it (the
order share and push need customers and products pushed first).
"""

from __future__ import annotations

import dagster as dg

from crm_wave.defs.assets import COLLECT, GLOBAL, PUSH, SHARE, SHARE_TO_PUSH, snapshot

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.assets(*COLLECT, *GLOBAL, *SHARE, *PUSH, snapshot),
    description="One full pass: collect -> global -> share -> push, for all four dataflows; then a snapshot.",
    executor_def=dg.in_process_executor,
)

collect_job = dg.define_asset_job(
    "collect_job",
    selection=dg.AssetSelection.assets(*COLLECT, *GLOBAL, *SHARE),
    description="Collect both systems and recompute golden records and share diffs (writes nothing to the systems).",
    executor_def=dg.in_process_executor,
)

collect_schedule = dg.ScheduleDefinition(
    job=collect_job, cron_schedule="* * * * *", default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every minute: read both systems' changes and recompute the diffs.",
)


@dg.sensor(
    name="push_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    asset_selection=dg.AssetSelection.assets(*PUSH).downstream(),
    description="Launches pushes when a share asset's latest materialization has work.",
)
def push_sensor(context: dg.SensorEvaluationContext):
    """Look only at materialization metadata (never at DuckDB) and decide whether to push."""
    seen = dict(item.split("=", 1) for item in (context.cursor or "").split(",") if "=" in item)
    to_push, cursor = [], dict(seen)
    for share_key, push_key in SHARE_TO_PUSH.items():
        event = context.instance.get_latest_materialization_event(dg.AssetKey(share_key))
        if event is None or event.asset_materialization is None:
            continue
        stamp = repr(event.timestamp)
        work = event.asset_materialization.metadata.get("work")
        if seen.get(share_key) != stamp and work is not None and work.value > 0:
            to_push.append(push_key)
        cursor[share_key] = stamp
    context.update_cursor(",".join(f"{k}={v}" for k, v in sorted(cursor.items())))
    if not to_push:
        return dg.SkipReason("no share asset has work")
    # The pushes, and what depends on them (customers and products pushed -> orders re-merged and pushed).
    keys = dg.AssetSelection.assets(*to_push).downstream().resolve(context.repository_def.asset_graph)
    return dg.RunRequest(run_key=f"push-{context.cursor}", asset_selection=sorted(keys))
