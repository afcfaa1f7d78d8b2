"""Jobs, the collect schedule and the sensors, every one of them per tenant.

- `tenants_sensor` keeps the `tenants` partitions equal to the tenant registry.
- `collect_schedule` materializes collect -> global -> share, each minute, for the tenants that
  want it: a head moved, never synced, last run failed, or no pass for `CRM_WAVE_SCHEDULE_MINUTES`
  (the fleet's rule, `look_tenant`); an idle tenant costs a look (a few ms), not a run.
- `push_sensor` launches, per tenant, the push of every share asset whose newest
  materialization reported work (unless its own run pushed it), plus what follows it
  (orders need customers and products pushed first). Why not an `AutomationCondition`:
  docs/architecture.md, "Asset lineage".
- `changes_sensor` asks both systems of every idle tenant every 10 s whether anything
  changed (`crm_wave/sync/heads.py`: the CRM change feeds' heads, Wave's newest `modifiedAt`)
  and, when something did, launches one `sync_job` run of the stages that moved and what follows
  them (the collects of the feeds that moved -> global -> share -> push, then the snapshot), so an
  edit reaches the other side without waiting for the schedule and the push sensor.
Every run carries the tag `tenant`, so the run queue can limit runs per tenant (one
at a time, see `deploy/dagster.yaml`) while different tenants run in parallel.
"""

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from crm_wave.defs.assets import COLLECT, GLOBAL, PUSH, SHARE, SHARE_TO_PUSH, TENANT_PARTITIONS, TENANTS, snapshot
from crm_wave.defs.resources import SyncResource
from crm_wave.sync.heads import NO_FEED, Look, Unreachable, seed_marks
from crm_wave.sync.names import CRM_RESOURCE, dataset
from crm_wave.sync.stages import downstream
from crm_wave.systems.http import ApiError
from crm_wave.config.tenants import TenantError, load_tenants
from crm_wave.config.fleet import FleetSettings
from crm_wave.defs.fleet import FLEET_ON, Probes, TenantState, load_state, look_tenant, update_state

sync_job = dg.define_asset_job(
    "sync_job",
    selection=dg.AssetSelection.assets(*COLLECT, *GLOBAL, *SHARE, *PUSH, snapshot),
    description="One full pass for one tenant: collect -> global -> share -> push, for all four dataflows; then a snapshot.",
    executor_def=dg.in_process_executor,
)

#: With the fleet on (`CRM_WAVE_FLEET`, crm_wave/defs/fleet.py) its runs serve every tenant, so the
#: per-tenant automations below start stopped (the UI can still turn them on).
_FLEET = FLEET_ON
_SENSOR_ON = dg.DefaultSensorStatus.STOPPED if _FLEET else dg.DefaultSensorStatus.RUNNING

collect_job = dg.define_asset_job(
    "collect_job",
    selection=dg.AssetSelection.assets(*COLLECT, *GLOBAL, *SHARE, snapshot),
    description="Collect both systems and recompute golden records and share diffs (writes nothing to the systems); "
                "then a snapshot, so held deletes, waits and planned writes can be reviewed with `crm-wave sql`.",
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
    have = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    requests: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
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


#: The schedule's look clients, kept between evaluations (the code server process lives on): a
#: pair built anew costs ~0.1 CPU-s, a look with an open pair a few ms (see `Probes`).
_SCHEDULE_PROBES: dict[str, Probes] = {}


def _last_collect(instance: dg.DagsterInstance, tenant: str) -> float:
    """Epoch seconds of the tenant's newest collect of every dataset (any run: `sync_job`, `collect_job`,
    the fleet), 0 when some dataset was never collected. The oldest of the six newest: a run of what
    moved (`changes_sensor`'s, the fleet's) collects only the datasets that moved, and is no pass of
    every stage."""
    records = [_latest(instance, key, tenant) for key in COLLECT]
    return min(r.timestamp for r in records) if all(records) else 0.0


def _failed(instance: dg.DagsterInstance, tenant: str) -> str | None:
    """The job of the tenant's newest run when that run failed (its change may be unread), else None."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"tenant": tenant}), limit=1)
    return runs[0].job_name if runs and runs[0].status == dg.DagsterRunStatus.FAILURE else None


def _hhmm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M UTC")


def _decide(instance: dg.DagsterInstance, probes: Probes, tenant: str, st: TenantState,
            every_s: float) -> tuple[str | None, dict[str, str], str]:
    """(why the tenant gets a run or None, the run's tags, the line the tick reports) for one idle tenant.

    The rule is the fleet's (`look_tenant`); the tenant's last pass is its newest collect, whoever ran
    it. Also run: a tenant whose newest run failed (the fleet retries a failed sync the same way:
    its marks stay), one whose look failed (the run fails where the operator sees it), and one whose
    CRM has no change feed (an offset-style profile: a look cannot see its changes), every tick as before."""
    st.last_pass = max(st.last_pass, _last_collect(instance, tenant))
    failed = _failed(instance, tenant)
    blind = NO_FEED in (st.marks or {}).values()  # a CRM without change feed cannot say it changed: due every tick
    found, why, error = look_tenant(probes, tenant, st, force=False, full_every_s=0 if blind else every_s)
    if found is None:
        return "look-failed", {}, f"{tenant}: the look failed ({error}); run requested so it fails where you see it"
    if why is None and failed:
        why = "retry"
    if why is None:
        due = f"full pass due at {_hhmm(st.last_pass + every_s)}"
        if found.first:
            return None, {}, f"{tenant}: first look, marks recorded (last pass {_hhmm(st.last_pass)}); {due}"
        return None, {}, f"{tenant}: nothing changed since {_hhmm(st.last_pass)}; {due}"
    st.marks = found.marks  # what the requested run reads up to (a failed run is retried, see above)
    tags = {"crm_wave/changed": ",".join(found.changed)} if why == "changed" else {}
    detail = {"first": "never synced", "changed": f"changed: {', '.join(found.changed)}",
              "asked": f"{st.asked_by or 'an operator command'} at {_hhmm(st.asked)}",
              "due": "its CRM has no change feed" if blind else f"no pass since {_hhmm(st.last_pass)}", "retry": f"its last run ({failed}) failed"}[why]
    return why, tags, f"{tenant}: run requested ({detail})"


@dg.schedule(name="collect_schedule", job=collect_job, cron_schedule="* * * * *",
             default_status=dg.DefaultScheduleStatus.STOPPED if _FLEET else dg.DefaultScheduleStatus.RUNNING,
             description="Every minute, per tenant: a collect run when a head moved (the fleet's look), the tenant "
                         "was never synced, its last run failed, or it had no pass for CRM_WAVE_SCHEDULE_MINUTES "
                         "(default 15); an idle tenant gets none.")
def collect_schedule(context: dg.ScheduleEvaluationContext, sync: SyncResource):
    """One run per tenant that wants one (`_decide`), unless that tenant already has a run queued or in progress.

    The marks of each tenant's last look are kept in `<data>/fleet/state.json` (the fleet's state,
    `update_state`), which `changes_sensor` also moves when it launches a sync, so a change it
    synced is not seen here again.
    """
    # Its own variable alone: a bad value fails this tick, naming it; a bad CRM_WAVE_FLEET does not (see fleet.py).
    every_s = FleetSettings.value("schedule_minutes") * 60
    stamp = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "now"
    root = Path(sync.data_root)
    tenants = list(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    idle = [t for t in tenants if not _busy(context.instance, t)]
    lines = [f"{t}: a run is queued or in progress" for t in tenants if t not in idle]
    state = load_state(root)
    probes = _SCHEDULE_PROBES.setdefault(str(root), Probes(sync))
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(idle))), thread_name_prefix="schedule-look") as pool:
        decided = list(pool.map(lambda t: _decide(context.instance, probes, t, state.setdefault(t, TenantState()),
                                                  every_s), idle))
    if idle:
        update_state(root, {t: state[t] for t in idle})
    requests = []
    for tenant, (why, tags, line) in zip(idle, decided):
        lines.append(line)
        if why is not None:
            requests.append(dg.RunRequest(run_key=f"collect-{tenant}-{stamp}", partition_key=tenant,
                                          tags={"tenant": tenant, "crm_wave/why": why, **tags}))
    if not requests:
        return dg.SkipReason("; ".join(lines) or "no tenants")
    for line in lines:
        context.log.info(line)
    return requests


def _pushes_itself(instance: dg.DagsterInstance, run_id: str | None, push_key: str) -> bool:
    """The run that diffed also runs this push (a `sync_job` run, or a push run whose orders were
    re-diffed after their customers were pushed): nothing is left for another run to push."""
    run = instance.get_run_by_id(run_id) if run_id else None
    if run is None:
        return False
    if run.asset_selection:  # a subset of its job (None or empty: the whole job)
        return dg.AssetKey(push_key) in run.asset_selection
    return run.job_name in (sync_job.name, push_job.name)


def _latest(instance: dg.DagsterInstance, key: str, tenant: str):
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key),
                                                                    asset_partitions=[tenant]), limit=1).records
    return records[0] if records else None


def _new_share_materializations(instance: dg.DagsterInstance, after: int) -> dict[tuple[str, str], dg.EventLogRecord]:
    """Per (tenant, share asset): its newest materialization stored after storage id `after`."""
    newest: dict[tuple[str, str], dg.EventLogRecord] = {}
    for share_key in SHARE_TO_PUSH:
        page: str | None = None
        while True:  # oldest first, so the newest of each tenant is the one kept
            result = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey(share_key), after_storage_id=after),
                limit=1000, cursor=page, ascending=True)
            newest.update({(r.partition_key or "", share_key): r for r in result.records})
            if not result.has_more:
                break
            page = result.cursor
    return newest


def _work(record: dg.EventLogRecord) -> int:
    """The `work` a share materialization reported (0 when it reported none)."""
    entry = record.asset_materialization.metadata.get("work") if record.asset_materialization else None
    return entry.value if entry is not None and isinstance(entry.value, int) else 0


def _newest_share_materialization(instance: dg.DagsterInstance) -> int:
    """The storage id of the newest share materialization (0: none yet)."""
    newest = [instance.fetch_materializations(dg.AssetKey(k), limit=1).records for k in SHARE_TO_PUSH]
    return max((r[0].storage_id for r in newest if r), default=0)


@dg.sensor(name="push_sensor", minimum_interval_seconds=15, default_status=_SENSOR_ON,
           job=push_job,
           description="Launches a tenant's pushes when a share asset was materialized with work by a run that "
                       "does not push it itself.")
def push_sensor(context: dg.SensorEvaluationContext):
    """Read the share materializations stored since the last tick (never DuckDB) and push what they left.

    The cursor is one number: the storage id of the newest share materialization seen. The first
    tick (or one after a cursor of another shape, such as the per-share cursor of earlier versions)
    only records it: work that stood before is reported again by the next collect (the schedule
    re-diffs every minute, and a share step that finds nothing new reports the rows still
    waiting), so nothing is lost.
    """
    if not (context.cursor or "").isdigit():
        context.update_cursor(str(_newest_share_materialization(context.instance)))
        return dg.SkipReason("first tick: from the newest share materialization on")
    newest = _new_share_materializations(context.instance, int(context.cursor or 0))
    tenants = set(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    last = max((r.storage_id for r in newest.values()), default=None)
    to_push: dict[str, list[str]] = {}
    for (tenant, share_key), record in newest.items():
        push_key = SHARE_TO_PUSH[share_key]
        if tenant in tenants and _work(record) > 0 and not _pushes_itself(context.instance, record.run_id, push_key):
            to_push.setdefault(tenant, []).append(push_key)
    requests = []
    for tenant, pushes in to_push.items():
        # The pushes, and what depends on them (customers and products pushed -> orders re-merged and pushed).
        assert context.repository_def is not None  # a sensor of these definitions
        keys = dg.AssetSelection.assets(*pushes).downstream().resolve(context.repository_def.asset_graph)
        requests.append(dg.RunRequest(run_key=f"push-{tenant}-{last}", asset_selection=sorted(keys),
                                      partition_key=tenant, tags={"tenant": tenant}))
    if last is not None:
        context.update_cursor(str(last))
    return requests or dg.SkipReason("no new share materialization left work")




def _seed(instance: dg.DagsterInstance, tenant: str) -> dict[str, str]:
    """First marks of a tenant: where its last collects of the CRM feeds ended (their `cursor` metadata)."""
    cursors = {}
    for entity, resource in CRM_RESOURCE.items():
        record = _latest(instance, dataset("crm", entity), tenant)
        cursor = record.asset_materialization.metadata.get("cursor") if record else None
        cursors[resource] = cursor.value if cursor is not None else None
    return seed_marks(cursors)


#: The sensor's look clients, kept between ticks as the schedule's are (`Probes`: rebuilt when the
#: tenant's settings change): a fresh pair every tick cost 0.16 CPU-s a tenant, a kept one ~7 ms.
_CHANGES_PROBES: dict[str, Probes] = {}


def _look(probes: Probes, tenant: str, previous: dict[str, str] | None) -> Look | str:
    """One tenant's look, or why there is none (a reason that names no secret)."""
    try:
        return probes.look(tenant, previous)
    except (Unreachable, TenantError) as exc:  # both name the system or variable only
        return f"{tenant}: {exc}"
    except (ApiError, ValueError) as exc:  # a client could not be built from the tenant's settings
        return f"{tenant}: no client from its settings ({type(exc).__name__})"


@dg.sensor(name="changes_sensor", minimum_interval_seconds=10, default_status=_SENSOR_ON,
           job=sync_job,
           description="Every 10 s, asks both systems of each idle tenant whether anything changed (CRM change feed "
                       "heads, Wave's newest modifiedAt) and launches one sync of that tenant when something did.")
def changes_sensor(context: dg.SensorEvaluationContext, sync: SyncResource):
    """Per idle tenant: look (never at DuckDB), compare with the marks in the cursor, sync on a change.

    The first look at a tenant only records its marks. A busy tenant (a run queued or in
    progress) is not looked at, so its marks stay and a change made meanwhile is seen after
    that run. A tenant whose systems do not answer keeps its marks and is skipped with the
    reason. Our own pushes move the marks too: a sync that wrote is followed by one more that
    reads its writes back (see `crm_wave/sync/heads.py`).
    """
    state: dict[str, dict[str, str]] = json.loads(context.cursor) if context.cursor else {}
    tenants = list(context.instance.get_dynamic_partitions(TENANT_PARTITIONS))
    idle = [t for t in tenants if not _busy(context.instance, t)]
    reasons = [f"{t}: a run is queued or in progress" for t in tenants if t not in idle]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(idle))), thread_name_prefix="changes") as pool:
        probes = _CHANGES_PROBES.setdefault(sync.data_root, Probes(sync))
        looks = dict(zip(idle, pool.map(lambda t: _look(probes, t, state.get(t) or _seed(context.instance, t)), idle)))
    requests = []
    for tenant, found in looks.items():
        if isinstance(found, str):
            reasons.append(found)
            continue
        previous, state[tenant] = state.get(tenant), found.marks
        if found.first:
            reasons.append(f"{tenant}: first look, marks recorded")
        elif not found.changed:
            reasons.append(f"{tenant}: no change")
        else:
            digest = hashlib.sha1(json.dumps([previous, found.marks], sort_keys=True).encode()).hexdigest()[:16]
            # What moved and what follows it (`engine.sync_once(changed=...)` in Dagster's terms): the run
            # costs what the change costs, and the UI shows which stages it touched.
            stages = sorted(downstream(found.datasets))
            requests.append(dg.RunRequest(run_key=f"changes-{tenant}-{digest}", partition_key=tenant,
                                          asset_selection=[dg.AssetKey(n) for n in stages] + [snapshot.key],
                                          tags={"tenant": tenant, "crm_wave/changed": ",".join(found.changed)}))
    state = {t: marks for t, marks in state.items() if t in tenants}
    if requests:  # the marks the syncs read up to, for `collect_schedule`: a change synced here is not seen there again
        update_state(Path(sync.data_root), {}, marks={r.partition_key: state[r.partition_key] for r in requests
                                                      if r.partition_key})
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(state, sort_keys=True),
                           skip_reason=None if requests else "; ".join(reasons) or "no tenants")
