"""What every runner of a tenant's syncs keeps between looks, in `<data>/fleet/state.json`: no Dagster.

The fleet (`crm_wave/defs/fleet.py`), `collect_schedule`, `changes_sensor` and `crm-wave sync` (with
and without `--once`) read and write it under one file lock, so they agree on the marks of the last
look (`heads.look`), on when a tenant last had a pass of every stage, and on what an operator asked
for since (`ask_every_stage`). No secrets: marks are feed positions, the rest counters and times.

The rule of a look (`decide`): a pass of every stage when nothing is known to compare with (no marks
yet, a system did not answer, a CRM without change feed), when an operator's command changed what a
pass must act on since the last pass of every stage, or when that pass is older than
`CRM_WAVE_SCHEDULE_MINUTES`; else a sync of what moved, or none.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path

from filelock import FileLock

from crm_wave.sync.heads import NO_FEED, Look

__all__ = ["Decision", "TenantState", "ask_every_stage", "decide", "hhmm", "load_state", "save_state", "state_path",
           "update_state"]


@dataclass
class TenantState:
    """What the runners keep of one tenant between looks, rounds and runs."""

    marks: dict[str, str] | None = None
    last_pass: float = 0.0  # epoch seconds of the last pass of every stage (a sync of what moved does not count)
    looks: int = 0
    syncs: int = 0
    passes: int = 0
    failures: int = 0
    last_error: str | None = None
    #: Epoch seconds of the newest operator command a pass of every stage must act on (a decided conflict,
    #: a confirmed push, a retried dead letter, ...): such a pass is due while `asked > last_pass`.
    asked: float = 0.0
    asked_by: str | None = None  # that command, in words (`conflicts resolve`)
    policy: str | None = None  # fingerprint of the policy the last pass of every stage of `crm-wave sync` ran with
    unfinished: float = 0.0  # epoch seconds of the look before a `crm-wave sync` that has not ended (or died)
    held: list[str] = field(default_factory=list)  # the pushes a breaker held in the last `crm-wave sync`, in words
    snapshot_at: float = 0.0  # epoch seconds of the newest analyst snapshot the fleet or `crm-wave sync` published
    snapshot_behind: bool = False  # a sync since then is in no snapshot yet (`FleetConfig.snapshot_every_s`, `CRM_WAVE_SYNC_SNAPSHOT_SECONDS`)

    def snapshot_due(self, now: float, every_s: float) -> bool:
        """Whether a snapshot may be published at `now` (epoch seconds): the last one is at least `every_s` old."""
        return now - self.snapshot_at >= every_s

    def published(self, now: float) -> None:
        """A snapshot holding every sync so far was published at `now`."""
        self.snapshot_at, self.snapshot_behind = now, False


_FIELDS = {f.name for f in fields(TenantState)}


def state_path(data_root: Path) -> Path:
    """The state file of every tenant under `data_root`."""
    return data_root / "fleet" / "state.json"


def _read(path: Path) -> dict[str, TenantState]:
    if not path.exists():
        return {}
    # Keys this version does not know (a newer writer's) are left out, not an error.
    return {t: TenantState(**{k: x for k, x in v.items() if k in _FIELDS}) for t, v in json.loads(path.read_text()).items()}


def load_state(data_root: Path) -> dict[str, TenantState]:
    """Every tenant's state (empty when no runner has written it yet)."""
    return _read(state_path(data_root))


def _lock(data_root: Path) -> FileLock:
    """The lock of the state file: the fleet's runs, `collect_schedule`, `changes_sensor` and the CLI write it."""
    path = state_path(data_root)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(path.with_suffix(".lock"))


def _write(path: Path, state: dict[str, TenantState]) -> None:
    """Write atomically (a reader never sees half a file), through a temporary file of this writer's own.

    An operator's request (`asked`) is kept when newer than the writer's copy: a runner that loaded the
    state before the command (the fleet holds it for a whole run) must not wipe it."""
    on_file = _read(path)
    for tenant, st in state.items():
        kept = on_file.get(tenant)
        if kept is not None and kept.asked > st.asked:
            st.asked, st.asked_by = kept.asked, kept.asked_by
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=".state-", suffix=".tmp", delete=False) as tmp:
        tmp.write(json.dumps({t: asdict(s) for t, s in sorted(state.items())}, indent=1))
    Path(tmp.name).replace(path)


def save_state(data_root: Path, state: dict[str, TenantState]) -> None:
    """Write the whole state (these tenants and no others)."""
    with _lock(data_root):
        _write(state_path(data_root), state)


def update_state(data_root: Path, changed: dict[str, TenantState], *,
                 marks: dict[str, dict[str, str]] | None = None) -> None:
    """Write `changed` tenants' states over the file's, and set `marks` of more tenants, under the
    file's lock: every other tenant keeps what another writer left."""
    with _lock(data_root):
        state = load_state(data_root)
        state.update(changed)
        for tenant, found in (marks or {}).items():
            state.setdefault(tenant, TenantState()).marks = found
        _write(state_path(data_root), state)


def ask_every_stage(data_root: Path, tenant: str, command: str, *, now: float | None = None) -> None:
    """Record that `command` changed what a pass must act on: the next look of any runner of `tenant`
    (the fleet, `collect_schedule`, `crm-wave sync`) runs every stage."""
    with _lock(data_root):
        state = load_state(data_root)
        st = state.setdefault(tenant, TenantState())
        st.asked, st.asked_by = time.time() if now is None else now, command
        _write(state_path(data_root), state)


def hhmm(epoch: float) -> str:
    """`HH:MM UTC` of an epoch time."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M UTC")


@dataclass(frozen=True)
class Decision:
    """What a look means for a sync: none, a sync of what moved (`datasets`), or every stage (`every_stage`)."""

    run: bool
    every_stage: bool
    why: str
    datasets: frozenset[str] | None = None  # for `engine.sync_once(changed=...)`; None with every stage

    @property
    def changed(self) -> frozenset[str] | None:
        """`sync_once`'s `changed`: the datasets that moved, or None for every stage."""
        return None if self.every_stage else self.datasets


def decide(st: TenantState, found: Look | None, *, every_s: float, now: float | None = None,
           force: bool = False, unreachable: str | None = None, policy: str | None = None) -> Decision:
    """The rule of one look at a tenant whose state is `st` (before the look). `found`: the look, or None
    when a system did not answer (`unreachable` says which). `policy`: the fingerprint of the policy now
    (None: not compared). Every stage when forced, with nothing to compare with, after an operator's
    command, a policy change, or when the last pass of every stage is `every_s` old; else what moved."""
    now = time.time() if now is None else now

    def every(why: str) -> Decision:
        return Decision(True, True, why)

    if force:
        return every("forced")
    if found is None:
        return every(f"{unreachable or 'a system'} did not answer")
    if st.marks is None or found.first:
        return every("first look")
    if st.unfinished:
        return every(f"the sync after the look at {hhmm(st.unfinished)} did not finish")
    if NO_FEED in found.marks.values():
        return every("the CRM has no change feed")
    if st.asked > st.last_pass:
        return every(f"{st.asked_by or 'an operator command'} at {hhmm(st.asked)}")
    if policy is not None and st.policy is not None and policy != st.policy:
        return every("the policy changed")
    if not st.last_pass:
        return every("no pass of every stage yet")
    if now - st.last_pass >= every_s:
        return every(f"no pass of every stage since {hhmm(st.last_pass)}")
    if found.changed:
        return Decision(True, False, f"changed: {', '.join(found.changed)}", found.datasets)
    return Decision(False, False, f"nothing moved since the last look; every stage is due at {hhmm(st.last_pass + every_s)}")

