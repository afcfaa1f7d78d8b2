"""One sync pass, in-process: the stages of `stages.STAGES`, in their order, on one connection.

`run_pass` is the only code that runs a pass: `sync_once` (`crm-wave sync`, the tests, the benchmarks),
the Dagster `sync_job`/`collect_job`/`push_job` (one asset step running the selected
stages, `crm_wave/defs/assets.py`) and `plan` (the read-only stages on a scratch copy) all
call it. `sync_once` repeats passes until one writes nothing (the sync reads its own writes
back and must find nothing left to do: no echo), at most `max_passes` times.

A pass holds one DuckDB connection (`Store.session`): opening a DuckDB file costs 20-45 ms of
CPU, and reconnecting for every read and write was most of a small pass's cost (an idle pass
at 250 customers: 37 connects, 3.1 CPU-s; one session: 1.5 CPU-s). What may wait long on an API
gives the file back meanwhile (`Store.released`): a push while it sends, a collect's full read;
so operators' commands never wait for a slow push. Each stage commits its own transactions, so
a crash loses at most the stage in flight.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crm_wave.store.db import Store
from crm_wave.sync.breaker import CircuitOpen
from crm_wave.sync.collect import CollectResult, collect, utcnow
from crm_wave.sync.global_step import GlobalResult, build_global
from crm_wave.sync.push import PushPolicy, PushResult, push
from crm_wave.sync.share_step import ShareResult, build_share
from crm_wave.sync.names import dataset
from crm_wave.sync.stages import STAGES, SYSTEMS, Stage, downstream, stage
from crm_wave.systems.protocols import Client

__all__ = ["PassResult", "StageResult", "after_writes", "report_stage", "run_pass", "sync_once", "SYSTEMS"]

StageResult = CollectResult | GlobalResult | ShareResult | PushResult


@dataclass
class PassResult:
    """Everything one pass did: each stage's result by stage name, and the pushes a breaker held."""

    results: dict[str, StageResult] = field(default_factory=dict)
    held: list[CircuitOpen] = field(default_factory=list)

    def _of(self, kind: type) -> list[Any]:
        return [r for r in self.results.values() if isinstance(r, kind)]

    @property
    def collects(self) -> list[CollectResult]:
        return self._of(CollectResult)

    @property
    def globals(self) -> list[GlobalResult]:
        return self._of(GlobalResult)

    @property
    def shares(self) -> list[ShareResult]:
        return self._of(ShareResult)

    @property
    def pushes(self) -> list[PushResult]:
        return self._of(PushResult)

    @property
    def writes(self) -> int:
        """Records written to either system (`PushResult.writes`): a pass with none ends a sync."""
        return sum(p.writes for p in self.pushes)


def _run_stage(store: Store, s: Stage, clients: Mapping[str, Client], now: datetime, full: bool | None,
               run_id: str | None, business_id: str | None, policy: PushPolicy,
               progress: Callable[[str], None] | None) -> StageResult:
    if s.kind == "collect":
        assert s.system is not None
        return collect(store, s.system, s.entity, clients[s.system], now, full=full)
    if s.kind == "global":
        def read_back(systems: list[str]) -> None:
            """Collect the datasets another sync's push wrote to and has not read back (`build_global`); not a
            stage of the pass (a Dagster run materializes only the stages it selected)."""
            for system in systems:
                result = collect(store, system, s.entity, clients[system], now)
                if progress is not None:
                    progress(f"{result.dataset}: read back another sync's writes before the merge: "
                             f"{result.written} versions")
        return build_global(store, s.entity, now, read_back=read_back)
    assert s.system is not None
    if s.kind == "share":
        return build_share(store, s.system, s.entity)
    return push(store, s.system, s.entity, clients[s.system], now, run_id=run_id, policy=policy,
                progress=progress, business_id=business_id if s.system == "wave" else None)


def _linked(result: StageResult | None) -> bool:
    """A push that may have linked a record: created one, found one it had created, or does not know."""
    return isinstance(result, PushResult) and bool(result.created or result.recovered or result.unknown)


def _nothing_to_follow(s: Stage, out: PassResult, only: Collection[str], skipped: set[str]) -> bool:
    """In a pass of the stages downstream of some datasets (`follow=True`): `s` is there only through
    pushes that linked nothing (orders wait for their customers and products to be linked, and an
    update links nothing), or only through stages skipped for that reason."""
    ran = [d for d in s.deps if d in only and d not in skipped]
    if not ran:
        return any(d in skipped for d in s.deps)
    return all(stage(d).kind == "push" for d in ran) and not any(_linked(out.results.get(d)) for d in ran)


def run_pass(store: Store, clients: Mapping[str, Client], *, now: datetime | None = None, full: bool | None = None,
             run_id: str | None = None, business_id: str | None = None, only: Collection[str] | None = None,
             policy: PushPolicy = PushPolicy(), progress: Callable[[str], None] | None = None,
             on_stage: Callable[[Stage, StageResult | CircuitOpen], None] | None = None,
             follow: bool = False) -> PassResult:
    """Run the stages of one pass (those named in `only`, if given) in `STAGES` order.

    A push held by its circuit breaker is recorded in `held` and the pass goes on (its
    records wait; nothing else depends on them being sent). `on_stage` is called after each
    stage with its result (or the `CircuitOpen` that held it).
    `follow`: `only` is what is downstream of some datasets (`sync_once` after a look or a pass);
    a stage there only because it follows pushes that linked nothing is skipped (`_nothing_to_follow`).
    """
    now = now or utcnow()
    out = PassResult()
    skipped: set[str] = set()
    # A pass of what moved (after a look, or a read-back) is a few records, most often: one DuckDB thread.
    with store.session(), store.threads(1 if only is not None else None):
        for s in STAGES:
            if only is not None and s.name not in only:
                continue
            if follow and only is not None and _nothing_to_follow(s, out, only, skipped):
                skipped.add(s.name)
                continue
            outcome: StageResult | CircuitOpen
            try:
                outcome = out.results[s.name] = _run_stage(store, s, clients, now, full, run_id, business_id,
                                                           policy, progress)
            except CircuitOpen as held:
                out.held.append(held)
                outcome = held
            if on_stage is not None:
                on_stage(s, outcome)
    return out


def report_stage(s: Stage, result: StageResult | CircuitOpen, info: Callable[[str], None],
                 warn: Callable[[str], None]) -> None:
    """What a pass tells a person of a stage (an `on_stage` for `run_pass`, given where to say it): what
    each collect read and wrote (`info`), and the first 50 problems of each stage (`warn`): records a collect
    left out (no id), records a global step holds (unreadable), records a push's target refused."""
    problems: Sequence[str] = ()
    if isinstance(result, CollectResult):
        info(f"{s.name}: read {result.read}, wrote {result.written} versions (full={result.full})")
        problems = result.skipped
    elif isinstance(result, GlobalResult):
        problems = result.unreadable
    elif isinstance(result, PushResult):
        problems = result.messages
    for message in problems[:50]:
        warn(message)


def sync_once(store: Store, clients: Mapping[str, Client], *, max_passes: int = 4, full: bool | None = None,
              clock: Callable[[], datetime] = utcnow, run_id: str | None = None,
              business_id: str | None = None, progress: Callable[[str], None] | None = None,
              on_stage: Callable[[Stage, StageResult | CircuitOpen], None] | None = None,
              raise_held: bool = True, before_pass: Callable[[int], Collection[str] | None] | None = None,
              changed: Collection[str] | None = None) -> list[PassResult]:
    """Run passes until one writes nothing (or `max_passes`); return every pass's result.

    The first pass runs every stage, or, given `changed` (the datasets a look at the heads found
    moved, `heads.Look.datasets`), only their collects and the stages downstream of them. Each
    later pass reads back what the one before it wrote: it runs the collects of the datasets its
    pushes wrote to (or may have: an outcome unknown) and the stages downstream of them
    (`after_writes`), not the whole pass again. Either way, what waits inside the sync's own
    tables (a dead letter's retry, a held delete) is taken up by the next pass of every stage.
    A pass in which a breaker held a push is the last: its first `CircuitOpen` is raised after it,
    or, with `raise_held=False`, the passes are returned and the last one's `held` lists them all.
    `before_pass(i)` is called before each later pass (i >= 1): the fleet looks at the heads there, and
    returns the datasets that look saw moved (`heads.Look.moved`), which that pass then collects too:
    an edit made while the sync ran is read now, not left behind the marks that look recorded.

    The passes share one session of the file (opening and closing it, which checkpoints, cost
    about 0.1 CPU-s a pass); it is lent to whoever waits for the file between passes.
    """
    passes: list[PassResult] = []
    only: frozenset[str] | None = downstream(changed) if changed is not None and not full else None
    with store.session(), store.threads(1 if only is not None else None):  # see `run_pass`
        for i in range(max_passes):
            if i:
                with store.lent():  # an API call may follow, and someone may be waiting for the file
                    moved = before_pass(i) if before_pass is not None else None
                if moved and only is not None:
                    only = only | downstream(moved)
            result = run_pass(store, clients, now=clock(), full=full if i == 0 else None, run_id=run_id,
                              business_id=business_id, only=only, progress=progress, on_stage=on_stage,
                              follow=only is not None)
            passes.append(result)
            if result.held:
                if raise_held:
                    raise result.held[0]
                break
            if result.writes == 0:
                break
            only = after_writes(result)
    return passes


def after_writes(result: PassResult) -> frozenset[str]:
    """The stages a pass must run to read back what `result`'s pushes wrote: the collects of the
    datasets written to (or perhaps written to: outcomes unknown) and every stage downstream.

    What else changed in either system meanwhile waits for the next sync, as an edit made after a
    pass's collect does anyway. After one CRM edit pushed to Wave these are 11 of the 21 stages, of
    which the read-back pass runs 6: the orders' five follow the customer pushes only (`follow`), and an
    update links nothing (docs/benchmarks.md, "One edit")."""
    wrote = {dataset(s.system, s.entity) for s in STAGES
             if s.kind == "push" and s.system is not None and isinstance(r := result.results.get(s.name), PushResult)
             and (r.writes or r.unknown)}
    return downstream(wrote)
