"""One Dagster run serving many tenants: `fleet_job`, and the sensor that launches it.

A `sync_job` run per tenant costs Dagster about 7 CPU-s whatever the pass does (run creation,
event log, input provenance), which keeps one 2-core machine to a few tenants a minute. The
fleet spends that once for many tenants. Its step, per tenant: `look` at both systems
(`crm_wave/sync/heads.py`, a few small requests, no DuckDB) and, when something changed (or
the tenant's last pass is older than `full_every_s`, for changes that move no head, such as
Wave payments in strict mode), run passes (`engine.sync_once`) until one writes nothing.
Each tenant's sync is recorded as the materializations of its stage assets in the tenant's
partition (summed over its passes), so the UI shows every tenant's syncs on the same assets
as `sync_job`'s; a tenant that fails is logged, recorded as an observation of its
`crm_customer` asset with the error, and the others go on.

Two ways to run it (`CRM_WAVE_FLEET`, `crm_wave/config/fleet.py`, read when the definitions load; docs/deploy.md,
"Many tenants: the fleet", has the figures that chose between them):

- `loop` (recommended): the sensor keeps one long-lived run going; the run looks at every
  tenant each `look_every_s` for `minutes`, then ends, and the sensor starts the next.
- `batch`: the sensor looks at every tenant every tick and launches one run with the tenants
  that changed or are due (none while a fleet run is in progress).

With either, the per-tenant automations (`collect_schedule`, `push_sensor`, `changes_sensor`)
start stopped. The marks of each tenant's last look, its last pass and counters live in
`<data>/fleet/state.json` (no secrets), so a new run goes on where the last one stopped.
"""


import math
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import dagster as dg

from crm_wave.config.clients import crm_client, wave_client
from crm_wave.config.fleet import FLEET_VAR, FleetSettings
from crm_wave.config.settings import ConfigError, CrmSettings, Settings
from crm_wave.config.tenants import REGISTRY, Tenant, load_tenants
from crm_wave.defs.resources import SyncResource
from crm_wave.store.connection import keeping
from crm_wave.sync.breaker import CircuitOpen
from crm_wave.sync.engine import StageResult, report_stage, sync_once
from crm_wave.sync.heads import Look, look
from crm_wave.sync.state import TenantState, load_state, save_state, update_state
from crm_wave.sync.stages import Stage
from crm_wave.systems.protocols import Client, CrmApi, WaveApi

__all__ = ["FLEET_ON", "FLEET_VAR", "PROBE_POLICY", "FleetConfig", "fleet_job", "fleet_mode", "fleet_sensor", "look_tenant",
           "publish_behind", "serve_tenant", "sync_tenant", "load_state",
           "save_state", "update_state", "Probes", "TenantState", "shard_of", "SHARD_TAG"]

FLEET_TAG = "crm_wave/fleet"
TENANTS_TAG = "crm_wave/tenants"
SHARD_TAG = "crm_wave/shard"  # "<i>/<n>": a loop run serving shard i of n (`shard_of`)
#: How the fleet, `collect_schedule` and `changes_sensor` ask whether anything changed: a short timeout
#: and one retry, so a system that is down costs seconds of a round or tick, not the clients' minute of
#: backoff; and at most 2 s of waiting for room under the tenant's rate limit (which its syncs share).
PROBE_POLICY = {"timeout_s": 5.0, "max_attempts": 2, "backoff_max_s": 1.0, "max_retry_after_s": 5.0,
                "max_rate_wait_s": 2.0}
_MAX_PASSES = 4
#: Within a round the state file is written at most this often (and always at the round's end): a run that dies
#: loses at most these seconds of marks, and the next run's look finds those tenants' changes again and syncs
#: them once more (a pass that writes nothing). Writing it after every sync cost 10-20 ms each at 100 tenants.
_SAVE_EVERY_S = 5.0


def fleet_mode(environ: Any = os.environ) -> str | None:
    """`loop`, `batch`, or None (the fleet is off) from `CRM_WAVE_FLEET` (`FleetSettings`); ConfigError naming it otherwise."""
    return cast(str | None, FleetSettings.value("fleet", environ))


class FleetConfig(dg.Config):
    """What one fleet run serves, and how often."""

    tenants: list[str] = []  # batch: these tenants, each synced once; empty: every registered tenant
    minutes: float = 0.0  # > 0: loop over the tenants this long (looking at each every `look_every_s`)
    look_every_s: float = 10.0
    #: A tenant whose last pass of every stage is this old gets one though no head moved (changes a look cannot
    #: see: Wave payments in strict mode, a dead letter's retry). One that finds nothing is quiet (`_quiet`), but
    #: still costs about 0.6 CPU-s at 500 records: 0.12 CPU-s a tenant-minute at 300 s. `fleet_sensor` sets it
    #: from `CRM_WAVE_FLEET_FULL_SECONDS`.
    full_every_s: float = 300.0
    workers: int = 2  # tenants synced at once (DuckDB and polars release the GIL)
    snapshot: bool = True  # publish each synced tenant's analyst snapshot, as `sync_job` does
    #: A loop publishes a tenant's snapshot at most this often: a sync within it leaves the snapshot behind, and
    #: a later round (at the latest the run's last) publishes it. Each snapshot checkpoints and copies the file
    #: (0.2-0.4 CPU-s at 500 records). 0: after every sync. A batch run publishes once per synced tenant.
    #: `fleet_sensor` sets it from `CRM_WAVE_FLEET_SNAPSHOT_SECONDS`.
    snapshot_every_s: float = 60.0
    #: A loop keeps each tenant's DuckDB file open this long after its sync (`keep_open`), so the next sync
    #: neither reopens nor checkpoints it (0.15-0.3 CPU-s an edit). 0: close after every sync.
    keep_open_s: float = 60.0
    #: Loop runs at once (`CRM_WAVE_FLEET_SHARDS`): this run serves the tenants with `shard_of(t, shards) == shard`.
    shard: int = 0
    shards: int = 1


def shard_of(tenant: str, shards: int) -> int:
    """The shard (0 to `shards` - 1) whose loop run serves `tenant`: the same in every run and process."""
    return zlib.crc32(tenant.encode()) % max(1, shards)


def _save(root: Path, state: dict[str, TenantState], mine: list[str], registered: list[str], shards: int) -> None:
    """Write this run's tenants' states: the whole file when one run serves every tenant (tenants no longer
    registered leave it), else these tenants' over the file's (the other shards' runs write theirs)."""
    if shards > 1:
        update_state(root, {t: state[t] for t in mine if t in state})
    else:
        save_state(root, {t: st for t, st in state.items() if t in registered})


# ---------------------------------------------------------------- state (no Dagster): crm_wave/sync/state.py

@dataclass
class Outcome:
    """One tenant's turn: whether it was synced, its stage results summed over passes, and why."""

    tenant: str
    synced: bool = False
    passes: int = 0
    writes: int = 0
    changed: tuple[str, ...] = ()
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: dict[str, Stage] = field(default_factory=dict)
    held: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    cpu_s: float = 0.0
    #: Nothing new (`_quiet`): no snapshot, and only the collects are recorded (`_events`).
    quiet: bool = False


def _add(into: dict[str, Any], result: StageResult) -> None:
    """Sum a stage's counters over the passes of one sync (the last value of anything else)."""
    for key, value in asdict(result).items():
        if isinstance(value, bool) or not isinstance(value, int):
            into[key] = value if key not in into or not isinstance(value, list) else into[key] + value
        else:
            into[key] = into.get(key, 0) + value


#: What a push did that a person must see: a sync with any of these is never quiet.
_PUSH_NEWS = ("created", "updated", "recovered", "failed", "unknown", "messages")


def _quiet(out: Outcome) -> bool:
    """Whether a sync found and did nothing: no collect wrote or deleted a version, no push wrote, failed or
    has a message (a parked dead letter or a row skipped without a word is the same as at the last pass).
    The data analysts read is then what it was, and the other stages' counters what they were."""
    for s in out.stages.values():
        values = out.results.get(s.name, {})
        if s.kind == "collect" and (values.get("written") or values.get("deleted")):
            return False
        if s.kind == "push" and any(values.get(k) for k in _PUSH_NEWS):
            return False
    return not out.held


def _error(exc: BaseException) -> str:
    """One line naming the failure's kind and message (the clients' messages name no secret)."""
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"[:300]


class Probes:
    """Each tenant's pair of look clients, kept open between looks: building a pair costs about
    0.1-0.15 CPU-s (TLS context, settings), a look with an open pair about 7 ms. A pair is kept
    with the tenant settings it was built from; at each use the tenant's variables and registry entry
    are compared with those the settings were read from (`settings`): a changed URL, token or limit
    builds a new pair at once. A pair whose look failed is closed and built
    anew next time. One tenant is looked at by one thread at a time.
    The pair a tenant's syncs use (`clients`, the clients' own patient policy) is kept the same way:
    building it was 0.13 CPU-s of a one-edit tenant-sync of 1.5 (500 records)."""

    def __init__(self, sync: SyncResource) -> None:
        self.sync = sync
        self._pairs: dict[str, tuple[Any, Any, Any]] = {}
        self._sync_pairs: dict[str, tuple[Any, Any, Any]] = {}
        self._registry: tuple[Any, dict[str, Tenant]] = (None, {})
        self._settings: dict[str, tuple[Any, Settings]] = {}
        self._lock = threading.Lock()

    def _tenant(self, tenant: str) -> Tenant:
        """The tenant's registry entry, the file read again only when it changed (its stat)."""
        root = Path(self.sync.data_root)
        stamp = _stamp(root / REGISTRY)
        with self._lock:
            if self._registry[0] != stamp or not self._registry[1]:
                self._registry = (stamp, {t.name: t for t in load_tenants(root)})
            found = self._registry[1].get(tenant)
        return found if found is not None else self.sync.tenant(tenant)  # raises, naming the known tenants

    def settings(self, tenant: str) -> Settings:
        """`SyncResource.settings`, read again only when the tenant's registry entry or one of its variables
        changed: reading them costs 3-10 ms a look (pydantic-settings parses the whole environment, so the cost
        grows with the number of tenants: 10 ms at 100), comparing the tenant's variables well under one."""
        entry = self._tenant(tenant)
        # Every variable a tenant's settings read starts with its prefix (a CRM profile's renames too); a
        # profile given as a file is read again when the file changes.
        env = tuple((k, v) for k, v in os.environ.items() if k.startswith(entry.env_prefix))
        profile = (os.environ.get(CrmSettings.var("profile", entry.env_prefix)) or "").strip()
        key = (entry, env, _stamp(Path(profile)) if profile.endswith(".toml") or "/" in profile else None)
        kept = self._settings.get(tenant)
        if kept is not None and kept[0] == key:
            return kept[1]
        settings = entry.settings(os.environ, Path(self.sync.data_root))  # raises the problem, naming the variable
        self._settings[tenant] = (key, settings)
        return settings

    def _pair(self, pairs: dict[str, tuple[Any, Any, Any]], tenant: str, **policy: Any) -> tuple[Any, Any]:
        """The tenant's (crm, wave) clients in `pairs`, built with `policy` from its current settings and
        kept while those stay equal (tokens compare by value, in memory only)."""
        settings = self.settings(tenant)  # raises the tenant's settings problem, naming the variable
        kept = pairs.get(tenant)
        if kept is not None and kept[2] != settings:
            pairs.pop(tenant)
            for client in kept[:2]:
                client.close()
            kept = None
        if kept is None:
            crm = crm_client(settings, **policy)
            try:
                kept = pairs[tenant] = (crm, wave_client(settings, **policy), settings)
            except BaseException:
                crm.close()
                raise
        return kept[0], kept[1]

    def clients(self, tenant: str) -> dict[str, Client]:
        """The tenant's sync clients, built on first use and kept (`drop` closes them)."""
        pair = self._pair(self._sync_pairs, tenant)
        return {"crm": cast(Client, pair[0]), "wave": cast(Client, pair[1])}

    def look(self, tenant: str, marks: dict[str, str] | None) -> Look:
        """`heads.look` for the tenant (raises what it raises, or the tenant's settings problem)."""
        pair = self._pair(self._pairs, tenant, **PROBE_POLICY)
        try:
            return look(cast(CrmApi, pair[0]), cast(WaveApi, pair[1]), marks)
        except BaseException:
            self.drop(tenant)
            raise

    def drop(self, tenant: str, *, sync_pair: bool = False) -> None:
        """Close the tenant's look pair (and its sync pair, with `sync_pair`), if any."""
        for kept in (self._pairs.pop(tenant, None), self._sync_pairs.pop(tenant, None) if sync_pair else None):
            for client in kept[:2] if kept else ():
                client.close()

    def close(self) -> None:
        """Close every pair."""
        for tenant in {*self._pairs, *self._sync_pairs}:
            self.drop(tenant, sync_pair=True)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """What tells that a file changed: its (mtime_ns, size, inode); None when there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def look_tenant(probes: Probes, tenant: str, st: TenantState, *, force: bool,
                full_every_s: float) -> tuple[Look | None, str | None, str | None]:
    """Look at one tenant: (the look, why it wants a sync or None, the error that stopped the look or None).

    Why: `forced`, `first` (never synced: no pass recorded in `st`), `asked` (an operator's command since
    the last pass of every stage, `state.ask_every_stage`), `changed` (a head moved since `st.marks`) or
    `due` (no pass for `full_every_s`). A first look at a tenant synced before (by
    other runs: `collect_schedule` seeds `st.last_pass` from its materializations) only records its
    marks, unless its pass is due. A tenant that wants nothing gets the look's marks at once; one
    that wants a sync keeps its old marks until the sync (`sync_tenant`) records the marks it read up to."""
    try:
        found = probes.look(tenant, st.marks)
    except Exception as exc:  # noqa: BLE001 - the tenant is recorded and skipped; the others go on
        st.failures += 1
        st.last_error = _error(exc)
        return None, None, st.last_error
    st.looks += 1
    why = ("forced" if force else "first" if found.first and not st.last_pass else "asked" if st.asked > st.last_pass
           else "changed" if found.changed else "due" if time.time() - st.last_pass >= full_every_s else None)
    if why is None:
        st.marks = found.marks
    return found, why, None


def sync_tenant(sync: SyncResource, probes: Probes, tenant: str, st: TenantState, found: Look, *,
                run_id: str | None, log: Callable[[str], None], warn: Callable[[str], None],
                snapshot: bool = True, full_every_s: float | None = None, snapshot_every_s: float = 0.0) -> Outcome:
    """Run passes for one tenant until one writes nothing; update `st` in place.

    A tenant whose heads moved, and whose last pass of every stage is younger than `full_every_s`,
    gets a sync of what moved (`sync_once(changed=found.datasets)`); otherwise (a first sync, a due
    one, `full_every_s` None) every stage runs, and `st.last_pass` records when.
    Never raises for the tenant's own failure: the outcome carries it. The marks kept are those
    of the look taken before the last pass (which wrote nothing), so our own writes are not seen
    as a change next time, and an edit made during the sync is. The tenant's snapshot is published
    after the sync unless one was published less than `snapshot_every_s` ago (`publish_behind` then),
    or the sync is quiet (`_quiet`: it found and did nothing, and was neither a first sync nor asked for).
    """
    out = Outcome(tenant, changed=found.changed)
    t0, c0 = time.monotonic(), time.thread_time()
    started = time.time()  # the last pass's time: an operator's command after it is still to act on
    full = (full_every_s is None or not found.changed or found.first or not st.last_pass or st.asked > st.last_pass
            or started - st.last_pass >= full_every_s)
    routine = not found.first and bool(st.last_pass) and st.asked <= st.last_pass  # neither a first sync nor asked
    notes: list[str] = []  # the stages' lines, logged unless the sync is quiet (each line is an event in the run)
    try:
        store = sync.store(tenant)
        marks = found.marks
        clients = probes.clients(tenant)

        def on_stage(s: Stage, result: StageResult | CircuitOpen) -> None:
            report_stage(s, result, lambda m: notes.append(f"{tenant}: {m}"), lambda m: warn(f"{tenant}: {m}"))
            if isinstance(result, CircuitOpen):
                out.held.append(f"{s.name}: {result}")
            else:
                out.stages[s.name] = s
                _add(out.results.setdefault(s.name, {}), result)

        def before_pass(i: int) -> frozenset[str]:  # the heads each later pass will read (see the docstring)
            nonlocal marks
            now = probes.look(tenant, marks)
            marks = now.marks
            return now.moved  # an edit made during the sync: read by the next pass

        try:
            passes = sync_once(store, clients, max_passes=_MAX_PASSES, run_id=run_id, on_stage=on_stage,
                               raise_held=False, before_pass=before_pass, changed=None if full else found.datasets)
        except BaseException:
            probes.drop(tenant, sync_pair=True)  # built anew next time
            raise
        out.passes += len(passes)
        out.writes += sum(p.writes for p in passes)
        st.marks = marks
        if full:
            st.last_pass = started
        st.syncs += 1
        st.passes += out.passes
        st.last_error = None
        out.synced = True
        out.quiet = routine and _quiet(out)
        if out.quiet:
            pass  # nothing new to publish: the last snapshot (or the one left behind) holds this data already
        elif snapshot and st.snapshot_due(started, snapshot_every_s):
            out.results["snapshot"] = _publish(store, st)
        elif snapshot:
            st.snapshot_behind = True
    except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
        out.error = _error(exc)
        st.failures += 1
        st.last_error = out.error
    finally:
        out.seconds, out.cpu_s = time.monotonic() - t0, time.thread_time() - c0
        for note in notes if not out.quiet else ():
            log(note)
    return out


def _publish(store: Any, st: TenantState) -> dict[str, Any]:
    from crm_wave.analyst.snapshot import publish_now

    path = publish_now(store)
    st.published(time.time())
    return {"path": str(path)}


def publish_behind(sync: SyncResource, tenant: str, st: TenantState, *, every_s: float, final: bool) -> Outcome | None:
    """Publish the snapshot of a tenant whose last syncs are in none yet, once `every_s` has passed since its
    last one (or now, when `final`: the run ends). None when nothing is to publish; never raises."""
    if not st.snapshot_behind or (not final and not st.snapshot_due(time.time(), every_s)):
        return None
    out = Outcome(tenant)
    try:
        out.results["snapshot"] = _publish(sync.store(tenant), st)
    except Exception as exc:  # noqa: BLE001 - one tenant's failure must not stop the others
        out.error = f"snapshot: {_error(exc)}"
    return out


def serve_tenant(sync: SyncResource, probes: Probes, tenant: str, st: TenantState, *, force: bool, full_every_s: float,
                 run_id: str | None, log: Callable[[str], None], warn: Callable[[str], None],
                 snapshot: bool = True) -> Outcome:
    """One tenant's turn on its own: look, then sync when it wants one (`look_tenant`, `sync_tenant`)."""
    found, why, error = look_tenant(probes, tenant, st, force=force, full_every_s=full_every_s)
    if found is None or why is None:
        return Outcome(tenant, error=error)
    return sync_tenant(sync, probes, tenant, st, found, run_id=run_id, log=log, warn=warn, snapshot=snapshot,
                       full_every_s=full_every_s)


# ---------------------------------------------------------------- Dagster

def _pool_events(context: dg.OpExecutionContext) -> None:
    """Keep the run's event-log connections open between events, as Dagster's webserver does.

    Dagster's Postgres storage opens a new connection for every write (no pool, so that short runs hold
    none): two for each materialization, each a new Postgres backend. Measured per materialization: 9.8 ms
    of this process's CPU and 27 ms of Postgres's, against 5-7 and 1.5-2 with kept connections (a log line:
    4 + 13 ms against 2 + 0.7); a fleet tenant-sync writes about a dozen (docs/deploy.md, "Session 13").
    A long-lived run is the case the webserver's setting is for. No statement timeout (0), as without
    it; nothing changes on SQLite."""
    context.instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=8)


def _metadata(values: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    meta: dict[str, Any] = {k: v for k, v in values.items() if isinstance(v, (int, float, str, bool)) and v is not None}
    if values.get("messages"):
        meta["messages"] = dg.MetadataValue.md("\n".join(f"- {m}" for m in values["messages"][:20]))
    meta.update({"passes": outcome.passes, "fleet": True, **({"quiet": True} if outcome.quiet else {})})
    return meta


def _events(outcome: Outcome) -> Iterator[dg.AssetMaterialization | dg.AssetObservation]:
    """What the UI shows of one tenant's turn: a materialization per stage that ran (its partition)."""
    if outcome.error is not None:
        yield dg.AssetObservation(asset_key="crm_customer", partition=outcome.tenant,
                                  metadata={"fleet_error": outcome.error})
        return
    for name, values in outcome.results.items():
        if outcome.quiet and (name not in outcome.stages or outcome.stages[name].kind != "collect"):
            continue  # a quiet sync: the collects say the tenant was read, and when; the rest is as last recorded
        yield dg.AssetMaterialization(asset_key=name, partition=outcome.tenant, metadata=_metadata(values, outcome))


def _say(context: dg.OpExecutionContext, outcome: Outcome) -> None:
    if outcome.error is not None:
        context.log.error(f"{outcome.tenant}: failed, the other tenants go on: {outcome.error}")
    elif outcome.synced and not outcome.quiet:  # a quiet one is on its collects' materializations
        why = ", ".join(outcome.changed) or "due"
        context.log.info(f"{outcome.tenant}: synced ({why}): {outcome.passes} passes, {outcome.writes} writes, "
                         f"{outcome.seconds:.1f} s, {outcome.cpu_s:.2f} CPU-s")
    for held in outcome.held:
        context.log.warning(f"{outcome.tenant}: push held by the circuit breaker: {held}")


@dg.op(name="serve_fleet", description="Look at each tenant; sync those with changes or due; record each tenant's "
                                       "stages as materializations of its partition.")
def serve_fleet(context: dg.OpExecutionContext, config: FleetConfig, sync: SyncResource) -> Iterator[Any]:
    """One round over `config.tenants` (batch), or rounds every `look_every_s` for `minutes` (loop)."""
    root = Path(sync.data_root)
    registered = [t.name for t in load_tenants(root, os.environ)]
    unknown = sorted(set(config.tenants) - set(registered))
    if unknown:
        context.log.warning(f"not registered, skipped: {', '.join(unknown)}")
    tenants = [t for t in registered if t in config.tenants] if config.tenants else registered
    if config.shards > 1:
        tenants = [t for t in tenants if shard_of(t, config.shards) == config.shard]
    force = bool(config.tenants) and config.minutes <= 0  # the sensor looked already
    state = load_state(root)
    deadline = time.monotonic() + config.minutes * 60
    totals = {"rounds": 0, "looks": 0, "syncs": 0, "failures": 0}
    cpu0 = time.process_time()
    probes = Probes(sync)
    looping = config.minutes > 0
    _pool_events(context)
    with keeping(config.keep_open_s if looping else 0.0), ThreadPoolExecutor(max_workers=max(1, config.workers), thread_name_prefix="fleet") as pool, \
            closing(probes):
        while True:
            started = time.monotonic()
            for t, fresh in load_state(root).items():  # an operator's command since the last round (ask_every_stage)
                if t in state and fresh.asked > state[t].asked:
                    state[t].asked, state[t].asked_by = fresh.asked, fresh.asked_by
            # Look at every tenant first (a few ms each), then sync: those with changes first, then
            # the passes that are due, oldest first and only a round's share of them (they spread
            # out instead of all falling due in one round, and never hold back a changed tenant).
            looked = list(pool.map(lambda t: look_tenant(probes, t, state.setdefault(t, TenantState()),
                                                         force=force, full_every_s=config.full_every_s), tenants))
            totals["looks"] += len(tenants)
            wanted: list[tuple[str, Look]] = []
            due: list[tuple[str, Look]] = []
            for tenant, (found, why, error) in zip(tenants, looked):
                if error is not None:
                    totals["failures"] += 1
                    outcome = Outcome(tenant, error=error)
                    _say(context, outcome)
                    yield from _events(outcome)
                elif found is not None and why is not None:
                    (due if why == "due" else wanted).append((tenant, found))
            share = max(1, math.ceil(len(tenants) * max(config.look_every_s, 1.0) / max(config.full_every_s, 1.0)))
            wanted += sorted(due, key=lambda item: state[item[0]].last_pass)[:share]
            futures = [pool.submit(sync_tenant, sync, probes, t, state[t], found, run_id=context.run_id,
                                   log=context.log.debug, warn=context.log.warning, snapshot=config.snapshot,
                                   full_every_s=config.full_every_s,
                                   snapshot_every_s=config.snapshot_every_s if looping else 0.0)
                       for t, found in wanted]
            saved = time.monotonic()
            for future in as_completed(futures):
                outcome = future.result()
                totals["syncs"] += outcome.synced
                totals["failures"] += outcome.error is not None
                _say(context, outcome)
                yield from _events(outcome)
                if time.monotonic() - saved >= _SAVE_EVERY_S:  # kept if the run dies (`_SAVE_EVERY_S`)
                    _save(root, state, tenants, registered, config.shards)
                    saved = time.monotonic()
            final = time.monotonic() >= deadline  # decided once: the round that publishes what is behind is the last
            behind = [t for t in tenants if state[t].snapshot_behind]
            for published in pool.map(lambda t: publish_behind(sync, t, state[t], every_s=config.snapshot_every_s,
                                                               final=final), behind):
                if published is not None:
                    _say(context, published)
                    yield from _events(published)
            totals["rounds"] += 1
            _save(root, state, tenants, registered, config.shards)
            if final:
                break
            left = deadline - time.monotonic()
            time.sleep(max(0.0, min(left, config.look_every_s - (time.monotonic() - started))))
    yield dg.Output(None, metadata={**totals, "tenants": len(tenants), "cpu_s": round(time.process_time() - cpu0, 2)})


@dg.job(name="fleet_job", executor_def=dg.in_process_executor,
        description="One run serving many tenants: looks at each, syncs those with changes (or not synced for "
                    "`full_every_s`), and records each tenant's stages on its partition of the stage assets.")
def fleet_job() -> None:
    """The fleet's one step."""
    serve_fleet()


_ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
           dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def _fleet_active(instance: dg.DagsterInstance) -> bool:
    return bool(instance.get_run_ids(filters=dg.RunsFilter(job_name="fleet_job", statuses=_ACTIVE), limit=1))


def _shards_to_start(instance: dg.DagsterInstance, shards: int) -> list[int]:
    """The shards of `shards` with no active loop run; none while a run of another split (or unsplit, or a
    batch) is active: two runs never serve one tenant."""
    active = instance.get_runs(filters=dg.RunsFilter(job_name="fleet_job", statuses=_ACTIVE))
    tags = [run.tags.get(SHARD_TAG) for run in active]
    if any(tag is None or not tag.endswith(f"/{shards}") for tag in tags):
        return []
    busy = {int(tag.split("/")[0]) for tag in tags if tag is not None}
    return [i for i in range(shards) if i not in busy]


def _loop_settings() -> dict[str, Any]:
    """A loop run's `FleetConfig` from the variables, read when the sensor ticks (a bad value fails that tick)."""
    return {"minutes": _loop_minutes(), "snapshot_every_s": FleetSettings.value("fleet_snapshot_seconds"),
            "full_every_s": FleetSettings.value("fleet_full_seconds")}


def _op_config(**values: Any) -> dict[str, Any]:
    return {"ops": {"serve_fleet": {"config": values}}}


#: Loop: minutes per run (the sensor starts the next when one ends).
def _loop_minutes(environ: Any = os.environ) -> float:
    """`CRM_WAVE_FLEET_MINUTES`, read when the loop sensor ticks (a bad value fails that tick, naming it)."""
    return cast(float, FleetSettings.value("fleet_minutes", environ))


def _mode_at_load() -> tuple[str | None, str | None]:
    """The fleet mode when the definitions load, and the problem with `CRM_WAVE_FLEET` if it has one.

    A bad value must not stop the definitions from loading (every run of every tenant loads them):
    the per-tenant automations then run as with the fleet off, and `fleet_sensor` runs only to fail
    each tick with the one-line error, where the UI shows it."""
    try:
        return fleet_mode(), None
    except ConfigError as exc:
        return None, str(exc)


_MODE, _MODE_ERROR = _mode_at_load()
#: The fleet serves the tenants: `collect_schedule`, `push_sensor` and `changes_sensor` start stopped.
FLEET_ON = _MODE is not None
#: The batch sensor's look clients, kept between ticks (the code server process lives on).
_SENSOR_PROBES: dict[str, Probes] = {}


@dg.sensor(name="fleet_sensor", job=fleet_job, minimum_interval_seconds=10,
           default_status=dg.DefaultSensorStatus.RUNNING if _MODE or _MODE_ERROR else dg.DefaultSensorStatus.STOPPED,
           description="The fleet (CRM_WAVE_FLEET=loop|batch): keeps one long-lived fleet run going (loop), or "
                       "looks at every tenant and launches one run with those that changed (batch).")
def fleet_sensor(context: dg.SensorEvaluationContext, sync: SyncResource):
    """Loop: start a fleet run when none is in progress. Batch: look, then one run for the changed tenants."""
    if _MODE_ERROR:
        raise ConfigError(_MODE_ERROR)
    stamp = f"{time.time():.0f}"
    shards = FleetSettings.value("fleet_shards") if (_MODE or "loop") == "loop" else 1
    if shards > 1:  # one loop run per shard, each started when its last one ended
        start = _shards_to_start(context.instance, shards)
        if not start:
            return dg.SkipReason("every shard's fleet run is in progress (or a run of another split is)")
        loop = _loop_settings()
        return [dg.RunRequest(run_key=f"fleet-loop-{i}-of-{shards}-{stamp}",
                              run_config=_op_config(**loop, shards=shards, shard=i),
                              tags={FLEET_TAG: "loop", SHARD_TAG: f"{i}/{shards}"}) for i in start]
    if _fleet_active(context.instance):
        return dg.SkipReason("a fleet run is in progress")
    if (_MODE or "loop") == "loop":
        return dg.RunRequest(run_key=f"fleet-loop-{stamp}", run_config=_op_config(**_loop_settings()),
                             tags={FLEET_TAG: "loop"})
    root = Path(sync.data_root)
    state = load_state(root)
    tenants = [t.name for t in load_tenants(root, os.environ)]
    probes = _SENSOR_PROBES.setdefault(str(root), Probes(sync))
    full_every_s = FleetSettings.value("fleet_full_seconds")

    def one(tenant: str) -> tuple[str, str | None]:
        # A tenant that wants a sync keeps its marks (the run looks again per pass); a failed look keeps
        # them too, and the next tick asks again.
        found, why, error = look_tenant(probes, tenant, state.setdefault(tenant, TenantState()), force=False,
                                        full_every_s=full_every_s)
        if error is not None:
            return tenant, f"{tenant}: {error}"
        return tenant, "due" if found is not None and why is not None else None

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(tenants))), thread_name_prefix="fleet-look") as pool:
        looked = list(pool.map(one, tenants))
    save_state(root, state)
    due = [t for t, why in looked if why == "due"]
    problems = [why for _, why in looked if why not in (None, "due")]
    if not due:
        return dg.SkipReason("; ".join(problems) or f"{len(tenants)} tenants, no change")
    return dg.RunRequest(run_key=f"fleet-batch-{stamp}", run_config=_op_config(tenants=due),
                         tags={FLEET_TAG: "batch", TENANTS_TAG: ",".join(due)[:1000]})
