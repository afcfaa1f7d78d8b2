"""The `crm-wave` command."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crm_wave.sync.heads import Look
    from crm_wave.sync.state import Decision, TenantState


def _cmd_sim_wave(args: argparse.Namespace) -> int:
    from crm_wave.systems.serve import serve_forever
    from crm_wave.systems.wave.simulator import create_app

    app = create_app(db_path=Path(args.db), token=args.token, strict=args.strict)
    mode = " in strict mode" if args.strict else ""
    print(f"Wave simulator{mode} on http://{args.host}:{args.port}/graphql/public (db {args.db})", flush=True)
    serve_forever(app, args.host, args.port)
    return 0


def _cmd_sim_crm(args: argparse.Namespace) -> int:
    from crm_wave.systems.crm.simulator import create_app, seed
    from crm_wave.systems.serve import serve_forever

    if args.seed is not None:
        counts = seed(Path(args.db), seed=args.seed, customers=args.customers, products=args.products, orders=args.orders)
        print(f"seeded {counts}", flush=True)
    app = create_app(db_path=Path(args.db), token=args.token, style=args.style)
    print(f"CRM simulator ({args.style} style; CRM_PROFILE={args.style}) on http://{args.host}:{args.port}/api/v1 "
          f"(db {args.db})", flush=True)
    serve_forever(app, args.host, args.port)
    return 0


class _SimulatorStyles:
    """The CRM simulator's styles for `--style`, read when the option is checked or listed: importing
    the simulator (its web framework) to build the parser cost every command 0.3-0.6 s of start-up."""

    def _styles(self) -> tuple[str, ...]:
        from crm_wave.systems.crm.simulator.styles import ALL_STYLES

        return ALL_STYLES

    def __contains__(self, style: object) -> bool:
        return style in self._styles()

    def __iter__(self):
        return iter(self._styles())


def _cmd_sync(args: argparse.Namespace) -> int:
    import time

    settings = _settings(args.tenant)  # fails early, naming what is missing
    policy = _check_policy(settings)
    if policy is None:
        return 2
    loop = None
    if not args.once:
        from crm_wave.config.loop import LoopSettings

        loop = LoopSettings.load()  # a bad value: one line naming the variable, before any look
    looks = _Looks(args.tenant, settings, _schedule_every_s(), _fingerprint(policy))
    # `--once` keeps the file over its turn only (the summary reads the sync's connection; the snapshot
    # closes it); the loop keeps it between syncs (`CRM_WAVE_SYNC_KEEP_OPEN_SECONDS`).
    keep_s = 60.0 if loop is None else loop.keep_open_s(args.every)
    snapshot_every_s = 0.0 if loop is None else loop.snapshot_seconds
    store = None  # opened for the first pass: a look that calls for none needs no DuckDB (nor its imports)

    def opened():
        nonlocal store
        if store is None:
            from crm_wave.store import Store
            from crm_wave.store.connection import keeping

            stack.enter_context(keeping(keep_s))  # closed (checkpointed) when the command ends
            store = Store(settings.db_path)
        return store

    with contextlib.ExitStack() as stack:
        stack.callback(looks.close)
        if loop is not None:
            _stop_on_sigterm(stack)
        try:
            force = args.every_stage  # the first sync only: the loop then follows the rule
            while True:
                # An idle tenant costs a look (a few small requests), not a pass: `state.decide`, the rule of
                # the fleet and `collect_schedule`, on the state they share (<data>/fleet/state.json).
                decision = looks.decide(force=force)
                force = False
                if not decision.run:
                    if args.once or not args.quiet:  # the loop's idle turns are quiet with --quiet
                        print(f"no pass: {decision.why} (`crm-wave sync --once --every-stage` runs it now)", flush=True)
                    if looks.st.held:  # the last sync's, still waiting: what that sync said, and its exit code
                        _say_held(looks.st.held)
                        if args.once:
                            return 3
                    if loop is not None and looks.st.snapshot_behind:  # a sync's snapshot, once its time has come
                        looks.snapshot(opened(), every_s=snapshot_every_s)
                else:
                    code = _sync_turn(args, opened(), looks, decision, snapshot_every_s)
                    if args.once:
                        return code
                if args.once:
                    return 0
                time.sleep(args.every)
        finally:
            if store is not None and looks.st.snapshot_behind:  # the last syncs are always in a snapshot at exit
                try:
                    looks.snapshot(store, every_s=0.0, final=True)
                except Exception as exc:  # noqa: BLE001 - said in one line; the loop's own exit stands
                    print(f"crm-wave sync: the last snapshot was not published ({type(exc).__name__}: {exc}); "
                          "the next sync publishes it", file=sys.stderr)
    return 0


def _stop_on_sigterm(stack: contextlib.ExitStack) -> None:
    """SIGTERM (a service manager's stop) ends the loop as Ctrl-C does: the file is closed and the last
    snapshot published, instead of the process dying where it stands."""
    import signal

    def stop(signum, frame):  # noqa: ARG001 - the signal handler's signature
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (a test calling main): no handler
        previous = signal.signal(signal.SIGTERM, stop)
        stack.callback(signal.signal, signal.SIGTERM, previous)


def _sync_turn(args: argparse.Namespace, store, looks: _Looks, decision: Decision, snapshot_every_s: float = 0.0) -> int:
    """One sync the look decided on: its passes, the state it leaves, the snapshot and the state table.
    The snapshot is published unless one was less than `snapshot_every_s` ago (the loop's spacing)."""
    from crm_wave.tools.report import format_summary, state_summary

    looks.begin()
    marks = looks.found.marks if looks.found is not None else looks.st.marks

    def before_pass(i: int) -> frozenset[str]:  # the heads each later pass reads up to: our own writes are not a change
        nonlocal marks
        if looks.found is None:
            return frozenset()
        marks, moved = looks.relook(marks)
        return moved  # an edit made during the sync: read by the next pass

    try:
        passes, held = _sync_passes(args, store, decision.changed, before_pass, settings=looks.settings)
    except Exception as failed:  # what the stages before it wrote is kept: show it, then say what failed
        looks.failed(failed)
        with contextlib.suppress(Exception):
            looks.snapshot(store, every_s=0.0, synced=True)
        if args.debug:
            raise
        from crm_wave.cli_errors import CliError, explain

        error = explain(failed, env_prefix=_env_prefix(args.tenant))
        if error.kind == "internal":  # a refused token, an unreachable system, a locked file keep their own code
            error = CliError(f"a stage failed: {error.message}", "sync_failed")
        raise error from failed
    looks.done(decision, marks, passes, held)
    code = 0
    if held:
        code = 3
        _say_held(held)
    else:
        what = "every stage" if decision.every_stage else "what moved"
        print(f"{passes} pass(es) ({what}: {decision.why})")
    summary = format_summary(state_summary(store))  # before the snapshot, which closes the kept file
    # What the analysts and a held push's review read (`crm-wave sql`): a held push's at once.
    looks.snapshot(store, every_s=0.0 if held else snapshot_every_s, synced=True)
    print(summary)
    return code


def _say_held(held: list[str]) -> None:
    print("sync held:", file=sys.stderr)
    for reason in held:
        print(f"  {reason}", file=sys.stderr)
    print("  review with `crm-wave plan`, then `crm-wave confirm <share table>`", file=sys.stderr)


def _sync_passes(args: argparse.Namespace, store, moved: frozenset[str] | None = None,
                 before_pass=None, *, settings) -> tuple[int, list[str]]:
    """Passes of the engine until one writes nothing (at most `--max-passes`): (passes run, the pushes a
    circuit breaker held, in words). `moved`: the datasets a look found moved (None: every stage); `settings`:
    the tenant's, read already by the look (the sync's clients are built from them).
    The stages are the Dagster `sync_job`'s (`sync_once`), run here without a Dagster run: an
    in-process run on a throwaway instance cost ~7 CPU-s of bookkeeping a pass that nobody could look at
    (docs/benchmarks.md); the UI's runs are `crm-wave dev`'s."""
    import uuid

    from crm_wave.sync.engine import report_stage, sync_once

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(message: str) -> None:  # problems: shown with --quiet too
        print(message, file=sys.stderr)

    from crm_wave.config.clients import clients as build_clients

    clients = build_clients(settings)
    try:
        passes = sync_once(store, clients, max_passes=args.max_passes, run_id=f"cli-{uuid.uuid4().hex}",
                           progress=say, on_stage=lambda s, r: report_stage(s, r, say, warn), raise_held=False,
                           changed=moved, before_pass=before_pass)
    finally:
        for client in clients.values():
            client.close()
    return len(passes), [str(held) for held in passes[-1].held] if passes else []


def _schedule_every_s() -> float:
    """How often the `crm-wave sync` loop runs every stage although no head moved: `CRM_WAVE_SCHEDULE_MINUTES`,
    as `collect_schedule` (changes that move no head: Wave payments in strict mode, a dead letter's retry)."""
    from crm_wave.config.fleet import FleetSettings

    return FleetSettings.value("schedule_minutes") * 60  # that variable alone: the fleet's are no concern here


def _fingerprint(policy) -> str:
    """What identifies a policy's content (`state.decide` runs every stage when it changes)."""
    import hashlib

    return hashlib.sha256(repr(policy).encode()).hexdigest()[:16]


class _Looks:
    """`crm-wave sync`'s looks at both systems' heads, and the tenant's shared state (`crm_wave.sync.state`).

    One pair of clients with the preflight's short policy serves every look (the first look is the
    preflight: a wrong URL or token is one line before any pass); the sync builds its own patient pair."""

    def __init__(self, tenant: str, settings, every_s: float, policy: str) -> None:
        from crm_wave.config.clients import crm_client, wave_client
        from crm_wave.sync.state import TenantState

        self.root, self.tenant, self.every_s, self.policy = _data_root(), tenant, every_s, policy
        self.settings = settings  # the sync's own clients are built from them too
        self.crm = crm_client(settings, max_attempts=2, timeout_s=15)
        try:
            self.wave = wave_client(settings, max_attempts=2, timeout_s=15)
        except BaseException:
            self.crm.close()
            raise
        self.first = True
        self.found: Look | None = None  # the last look (None: a system did not answer)
        self.st: TenantState = TenantState()  # the tenant's state as that look found it
        self.started = 0.0  # epoch seconds of that look: a pass of every stage after it counts from there

    def close(self) -> None:
        """Close the look clients."""
        self.crm.close()
        self.wave.close()

    def decide(self, *, force: bool = False) -> Decision:
        """Look, then `state.decide`; without a pass, record the look's marks at once."""
        import time

        from crm_wave.sync.heads import CRM_FEEDS, NO_FEED, Unreachable, look
        from crm_wave.sync.state import TenantState, decide, load_state, update_state

        self.st = load_state(self.root).get(self.tenant) or TenantState()
        self.started = time.time()
        unreachable = None
        try:
            self.found = look(self.crm, self.wave, self.st.marks)
        except Unreachable as exc:
            if self.first:  # the preflight: the cause in one line (`main`), not a failed pass's
                raise exc.cause from None
            self.found, unreachable = None, exc.system
        else:
            if self.first and all(self.found.marks.get(f"crm:{r}") == NO_FEED for r in CRM_FEEDS):
                self.crm.probe("customers")  # that look asked the CRM nothing
        self.first = False
        self.st.looks += 1
        decision = decide(self.st, self.found, every_s=self.every_s, now=self.started, force=force,
                          unreachable=unreachable, policy=self.policy)
        if not decision.run:
            assert self.found is not None
            self.st.marks = self.found.marks
            update_state(self.root, {self.tenant: self.st})
        return decision

    def relook(self, marks: dict[str, str] | None) -> tuple[dict[str, str] | None, frozenset[str]]:
        """(the marks now, the datasets whose feeds moved since `marks`) for `before_pass`; `marks` and nothing
        when a system does not answer (the next look then sees this sync's own writes as a change: a sync
        of what moved, which writes nothing)."""
        from crm_wave.sync.heads import Unreachable, look

        try:
            self.st.looks += 1
            found = look(self.crm, self.wave, marks)
            return found.marks, found.moved
        except Unreachable:
            return marks, frozenset()

    def begin(self) -> None:
        """Mark a sync in flight: one that dies (a kill, a crash) leaves the next look a pass of every stage."""
        from crm_wave.sync.state import update_state

        self.st.unfinished = self.started
        update_state(self.root, {self.tenant: self.st})

    def failed(self, exc: BaseException) -> None:
        """Record a failed sync; its marks and `unfinished` stay, so the next look runs every stage."""
        from crm_wave.sync.state import update_state

        with contextlib.suppress(Exception):  # the sync's own error is what the operator must see
            self.st.failures += 1
            self.st.last_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
            update_state(self.root, {self.tenant: self.st})

    def snapshot(self, store, *, every_s: float, synced: bool = False, final: bool = False) -> bool:
        """Publish the tenant's snapshot when a sync is in none yet (`synced`: one just ended) and the last one
        is at least `every_s` old (`final`: whatever its age); else mark it behind. Whether it published."""
        import time

        from crm_wave.sync.state import update_state

        st = self.st
        if not (synced or st.snapshot_behind):
            return False
        now = time.time()
        if final or st.snapshot_due(now, every_s):
            _publish(store)
            st.published(now)
        else:
            st.snapshot_behind = True
        update_state(self.root, {self.tenant: st})
        return not st.snapshot_behind

    def done(self, decision: Decision, marks: dict[str, str] | None, passes: int, held: list[str]) -> None:
        """Record a sync: the marks it read up to and, after a pass of every stage, its time and policy."""
        from crm_wave.sync.state import update_state

        st = self.st
        st.marks, st.unfinished, st.syncs, st.passes, st.last_error = marks, 0.0, st.syncs + 1, st.passes + passes, None
        st.held = list(held)
        if decision.every_stage:
            st.last_pass, st.policy = self.started, self.policy
        update_state(self.root, {self.tenant: st})


def _cmd_demo(args: argparse.Namespace) -> int:
    from crm_wave.tools.demo import data_dir_option, run_demo

    return run_demo(data_dir_option(args.data_dir, os.environ))


def _cmd_dev(args: argparse.Namespace) -> int:
    from crm_wave.tools.demo import data_dir_option
    from crm_wave.tools.dev import run_dev

    return run_dev(data_dir_option(args.data_dir, os.environ), port=args.port, crm_port=args.crm_port,
                   wave_port=args.wave_port)


def _data_root() -> Path:
    from crm_wave.config.settings import data_root

    return data_root()


def _settings(tenant: str):
    """The tenant's typed settings (crm_wave/config/settings.py); ConfigError naming what is missing."""
    from crm_wave.config.tenants import get_tenant

    return get_tenant(_data_root(), tenant).settings(os.environ, _data_root())


def _settings_store(tenant: str):
    from crm_wave.store import Store

    settings = _settings(tenant)
    return settings, Store(settings.db_path)


def _store(tenant: str):
    """The tenant's live DuckDB file, for commands that read or mark it without calling an API."""
    from crm_wave.cli_errors import CliError
    from crm_wave.config.settings import DB_FILE
    from crm_wave.store import Store
    from crm_wave.config.tenants import get_tenant

    path = get_tenant(_data_root(), tenant).data_dir(_data_root()) / DB_FILE
    if not path.exists():
        raise CliError(f"no sync has run in {path.parent} yet (no {DB_FILE}); run `crm-wave sync --once` first, "
                       "or set CRM_WAVE_DATA_DIR to the data directory", "no_data")
    return Store(path)


def _ask_every_stage(tenant: str, command: str) -> None:
    """After an operator's command a pass must act on (it moves no head): the next look of any runner of
    the tenant (`crm-wave sync`, the fleet, `collect_schedule`) runs every stage (`state.ask_every_stage`)."""
    from crm_wave.sync.state import ask_every_stage

    ask_every_stage(_data_root(), tenant, command)


def _publish(store) -> None:
    """A fresh snapshot after an operator's change, so `crm-wave sql` shows it at once."""
    from crm_wave.analyst.snapshot import publish_now

    publish_now(store)


def _clients(tenant: str) -> dict:
    from crm_wave.config.clients import clients

    return clients(_settings(tenant))


def _cmd_deadletters(args: argparse.Namespace) -> int:
    store = _store(args.tenant)  # DuckDB only: no API variables needed
    if args.action == "retry":
        return _retry_dead_letters(store, args)
    with store.connect() as con:
        rows = con.execute("SELECT system, entity, global_id, record_id, op, field, message, attempts, last_seen "
                           "FROM dead_letters ORDER BY last_seen").fetchall()
    for system, entity, gid, rid, op, field, message, attempts, last in rows:
        print(f"{system} {entity} {gid} (record {rid}) {op}: {field or 'record'}: {message} [attempts {attempts}, last {last}]")
    print(f"{len(rows)} dead letter(s)")
    return 0


def _retry_dead_letters(store, args: argparse.Namespace) -> int:
    from crm_wave.cli_errors import CliError
    from crm_wave.store.dead_letters import retry_dead_letters

    if not (args.all or args.ids):
        raise CliError("name the global ids to retry (see `crm-wave deadletters`), or --all", "usage")
    with store.connect() as con:
        n, unknown = retry_dead_letters(con, None if args.all else list(args.ids))
    if unknown:
        raise CliError(f"no dead letter for {', '.join(unknown)}; `crm-wave deadletters` lists them "
                       "(nothing was retried)", "not_found")
    print(f"{n} dead letter(s) will be retried by the next sync")
    _ask_every_stage(args.tenant, "deadletters retry")
    _publish(store)
    return 0


def _cmd_deletes(args: argparse.Namespace) -> int:
    from crm_wave.sync.collect import utcnow
    from crm_wave.sync.deletes import approve_deletes, pending_deletes

    store = _store(args.tenant)  # listing reads DuckDB only; approving builds the clients
    if args.action == "approve":
        if not (args.all or args.ids):
            print("name the global ids to approve, or --all", file=sys.stderr)
            return 2
        for line in approve_deletes(store, _clients(args.tenant), None if args.all else set(args.ids), utcnow()):
            print(line)
        _ask_every_stage(args.tenant, "deletes approve")
        _publish(store)
        return 0
    pending = pending_deletes(store)
    for d in pending:
        print(d.describe())
    print(f"{len(pending)} delete(s) waiting for approval")
    return 0


def _cmd_confirm(args: argparse.Namespace) -> int:
    from crm_wave.sync.breaker import breaker_state, confirm
    from crm_wave.sync.collect import utcnow
    from crm_wave.sync.names import ENTITIES, share_table

    store = _store(args.tenant)  # DuckDB only: no API variables needed
    known = {share_table(system, entity): (system, entity) for entity in ENTITIES for system in ("crm", "wave")}
    unknown = [s for s in args.shares if s not in known]
    if unknown:
        print(f"unknown share table(s) {', '.join(unknown)}; one of {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    confirmed = False
    for name, (system, entity) in known.items():
        state = breaker_state(store, system, entity)
        if state.open and (args.all or name in args.shares):
            state, confirmed = confirm(store, system, entity, utcnow()), True
        print(state.describe())
    if confirmed:
        _ask_every_stage(args.tenant, "confirm")
    return 0


def _cmd_sql(args: argparse.Namespace) -> int:
    from datetime import datetime

    from crm_wave.analyst.snapshot import latest_snapshot
    from crm_wave.analyst.sql import run_sql
    from crm_wave.config.tenants import get_tenant

    import duckdb

    from crm_wave.analyst.sql import ReadOnlyError
    from crm_wave.cli_errors import CliError

    data_dir = get_tenant(_data_root(), args.tenant).data_dir(_data_root())
    try:
        at = datetime.fromisoformat(args.at.replace("Z", "+00:00")) if args.at else None
    except ValueError:
        raise CliError(f"--at {args.at!r} is not an ISO 8601 time; write e.g. 2026-11-28T18:00:00Z or 2026-11-28",
                       "usage") from None
    try:
        path = latest_snapshot(data_dir / "snapshots", at=at)
    except FileNotFoundError as exc:
        message = (f"no snapshot in {data_dir / 'snapshots'} yet; run `crm-wave sync --once` (or `make demo`) first"
                   if args.at is None else f"{exc}; pick a later --at")
        raise CliError(message, "no_data") from None
    try:
        print(run_sql(path, args.query, fmt=args.format))
    except (duckdb.Error, ReadOnlyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"the query failed: {first}; list the tables and views with "
                       "`crm-wave sql \"SHOW TABLES\"`", "bad_query") from None
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    import json

    from crm_wave.sync.collect import utcnow
    from crm_wave.sync.plan import plan

    settings, store = _settings_store(args.tenant)
    policy = _check_policy(settings)
    if policy is None:
        return 2
    reviews: list[dict] = []
    planned = plan(store, _clients(args.tenant), utcnow(), reviews=reviews)
    writes = [p for p in planned if p.writes]
    if args.format == "json":
        print(json.dumps([{"system": p.system, "entity": p.entity, "global_id": p.global_id, "target_id": p.target_id,
                           "op": p.op, "reason": p.reason,
                           "fields": {f: {"from": a, "to": b} for f, (a, b) in p.fields.items()}} for p in planned],
                         indent=2, default=str))
    else:
        from crm_wave.mapping.policy import describe_policy
        from crm_wave.sync.conflicts_cli import review_lines

        print("\n".join(describe_policy(policy)))
        for p in planned:
            print("\n".join(p.lines()))
        print("\n".join(review_lines(reviews)))
        held = len(planned) - len(writes)
        print(f"{len(writes)} write(s) planned; {held} held or waiting" if planned else "in sync: nothing to write")
    return 2 if writes else 0


def _check_policy(settings):
    """The tenant's policy (see crm_wave.mapping.policy), or None after printing its one-line error."""
    from crm_wave.config.settings import AppSettings
    from crm_wave.mapping.policy import PolicyError, load_policy

    try:
        return load_policy(settings.data_dir, AppSettings.load().policy)
    except PolicyError as exc:
        print(f"policy: {exc}", file=sys.stderr)
        return None


def _cmd_conflicts(args: argparse.Namespace) -> int:
    from crm_wave.sync.conflicts_cli import run_conflicts

    _, store = _settings_store(args.tenant)
    code = run_conflicts(store, args)
    if args.action == "resolve" and code == 0:
        _ask_every_stage(args.tenant, "conflicts resolve")
    return code


def _cmd_tenants(args: argparse.Namespace) -> int:
    from crm_wave.config.tenants import add_tenant, load_tenants, remove_tenant

    root = _data_root()
    if args.action == "add":
        t = add_tenant(root, args.name, args.env_prefix)
        print(f"added tenant {t.name}: set {t.var('CRM_BASE_URL')}, {t.var('CRM_API_TOKEN')}, "
              f"{t.var('WAVE_GRAPHQL_URL')}, {t.var('WAVE_API_TOKEN')}; data in {t.data_dir(root)}")
    elif args.action == "remove":
        remove_tenant(root, args.name)
        print(f"removed tenant {args.name} (its DuckDB file is kept)")
    else:
        for t in load_tenants(root):
            print(f"{t.name}\tvariables {t.var('*')}\tdata {t.data_dir(root)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="crm-wave", description=__doc__,
                                     epilog="Errors are one line with a distinct exit code (README, Commands); "
                                            "--debug (anywhere on the line) shows the traceback instead.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run a local simulator of one system").add_subparsers(dest="system", required=True)
    wave = sim.add_parser("wave", help="Wave's public GraphQL API, from Wave's own schema")
    wave.add_argument("--host", default="127.0.0.1")
    wave.add_argument("--port", type=int, default=8702)
    wave.add_argument("--db", default="data/sim/wave.sqlite3")
    wave.add_argument("--token", default="wave-dev-token")
    wave.add_argument("--strict", action="store_true",
                      help="play Wave's undocumented harsh side: locked invoices, payments that keep modifiedAt, "
                           "one-second modifiedAt, 60 requests a minute and 2 in flight per token "
                           "(docs/wave-behaviour.md)")
    wave.set_defaults(func=_cmd_sim_wave)

    crm = sim.add_parser("crm", help="the Custom CRM REST contract")
    crm.add_argument("--host", default="127.0.0.1")
    crm.add_argument("--port", type=int, default=8701)
    crm.add_argument("--db", default="data/sim/crm.sqlite3")
    crm.add_argument("--token", default="crm-dev-token")
    crm.add_argument("--seed", type=int, default=None, help="fill with reproducible sample data first")
    crm.add_argument("--customers", type=int, default=20)
    crm.add_argument("--products", type=int, default=10)
    crm.add_argument("--orders", type=int, default=15)
    crm.add_argument("--style", choices=_SimulatorStyles(), default="contract", metavar="STYLE",
                     help="the API's shape, one of the simulator's styles; each has its CRM profile of the same "
                          "name (docs/custom-crm.md)")
    crm.set_defaults(func=_cmd_sim_crm)

    sync = sub.add_parser("sync", help="run the sync's stages in-process against the configured systems (no Dagster run)")
    sync.add_argument("--once", action="store_true",
                      help="one look at both systems, then the sync it calls for (passes until nothing is left to "
                           "write; every stage when one is due or an operator command asked for it), then exit")
    sync.add_argument("--every", type=float, default=60.0, help="seconds between syncs without --once")
    sync.add_argument("--every-stage", action="store_true",
                      help="run every stage in the first pass whatever the look at both systems found (what moves "
                           "no head and no command marked: e.g. a record changed in DuckDB by hand)")
    sync.add_argument("--max-passes", type=int, default=4)
    sync.add_argument("--quiet", action="store_true",
                      help="no progress on stderr (what each collect read, how far each push is), only problems")
    sync.set_defaults(func=_cmd_sync)

    demo = sub.add_parser("demo", help="simulators with overlapping data, two syncs with edits between, a summary")
    demo.add_argument("--data-dir", default=None,
                      help="where the demo's simulators and sync write (default: $CRM_WAVE_DATA_DIR, else data)")
    demo.set_defaults(func=_cmd_demo)

    sql = sub.add_parser("sql", help="run read-only SQL on the latest snapshot")
    sql.add_argument("query")
    sql.add_argument("--at", help="use the newest snapshot taken at or before this time (ISO 8601)")
    sql.add_argument("--format", choices=["table", "csv", "json"], default="table")
    sql.set_defaults(func=_cmd_sql)

    pl_ = sub.add_parser("plan", help="what the next sync would write (exit 2), or 0 when in sync; writes nothing")
    pl_.add_argument("--format", choices=["text", "json"], default="text")
    pl_.set_defaults(func=_cmd_plan)

    dl = sub.add_parser("deadletters", help="records a system refused: list them, or retry parked ones")
    dl.add_argument("action", nargs="?", choices=["list", "retry"], default="list")
    dl.add_argument("ids", nargs="*", help="global ids to retry")
    dl.add_argument("--all", action="store_true")
    dl.set_defaults(func=_cmd_deadletters)

    de = sub.add_parser("deletes", help="deletes held for approval: list them, or approve")
    de.add_argument("action", nargs="?", choices=["list", "approve"], default="list")
    de.add_argument("ids", nargs="*", help="global ids to approve")
    de.add_argument("--all", action="store_true")
    de.set_defaults(func=_cmd_deletes)

    cf = sub.add_parser("confirm", help="show the circuit breakers; confirm held pushes")
    cf.add_argument("shares", nargs="*", help="share tables to confirm, e.g. wave_customer_share")
    cf.add_argument("--all", action="store_true")
    cf.set_defaults(func=_cmd_confirm)

    co = sub.add_parser("conflicts", help="the conflict queue: field differences waiting for a person; decide them")
    co.add_argument("action", nargs="?", choices=["list", "resolve", "history"], default="list")
    co.add_argument("ids", nargs="*", type=int, help="conflict ids to resolve (from `crm-wave conflicts`)")
    co.add_argument("--all", action="store_true", help="resolve every open conflict")
    co.add_argument("--take", choices=["crm", "wave", "newest", "value"],
                    help="which value wins: the CRM's, Wave's, the newer edit's, or --value")
    co.add_argument("--value", help="the value to write to both systems (implies --take value)")
    co.add_argument("--by", help="who decides (default: the login name)")
    co.add_argument("--entity", choices=["customer", "product", "order"], help="only this entity")
    co.set_defaults(func=_cmd_conflicts)

    sub.add_parser("bench", help="benchmark at a million records, APIs and latency (crm-wave bench --help)")
    sub.add_parser("soak", help="faults and rate limits on both simulators, syncs until equal (crm-wave soak --help)")

    te = sub.add_parser("tenants", help="list, add or remove tenants (one CRM + one Wave business each)")
    te.add_argument("action", nargs="?", choices=["list", "add", "remove"], default="list")
    te.add_argument("name", nargs="?")
    te.add_argument("--env-prefix", help="prefix of the tenant's variables (default NAME_)")
    te.set_defaults(func=_cmd_tenants)

    for p in (sync, sql, pl_, dl, de, cf, co):
        p.add_argument("--tenant", default="default", help="which tenant (default: the embedded single tenant)")

    dev = sub.add_parser("dev", help="simulators plus `dg dev`: the Dagster UI with schedule and sensor running")
    dev.add_argument("--data-dir", default=None,
                     help="where the simulators and the sync keep their data (default: CRM_WAVE_DATA_DIR, else data)")
    dev.add_argument("--port", type=int, default=3000, help="the Dagster UI's port")
    dev.add_argument("--crm-port", type=int, default=8701, help="the CRM simulator's port (0: any free port)")
    dev.add_argument("--wave-port", type=int, default=8702, help="the Wave simulator's port (0: any free port)")
    dev.set_defaults(func=_cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    own = argv is None  # the process's own command line: the console script, `python -m crm_wave.cli`
    argv = sys.argv[1:] if argv is None else argv
    code = _main(argv)
    if own and [a for a in argv if a != "--debug"][:1] == ["sync"]:
        _finish(code)
    return code


def _finish(code: int) -> None:
    """End a `crm-wave sync` process now: its exit handlers run and its output is flushed as at any exit, but
    the interpreter does not tear down every module and object first (polars, DuckDB, pyarrow, pydantic:
    0.15-0.2 CPU-s, a twentieth of one edit's `sync --once`). Every file was closed by the command itself.
    Returns (an ordinary exit follows) while another non-daemon thread runs, which that exit waits for."""
    import atexit
    import threading

    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say
            stream.flush()
    os._exit(code)


def _main(argv: list[str]) -> int:
    if argv[:1] == ["soak"]:  # its own options (and --help) are parsed by crm_wave.tools.soak
        from crm_wave.tools.soak import main as soak_main

        return soak_main(argv[1:])
    if argv[:1] == ["bench"]:  # likewise: `crm-wave bench --help`
        from crm_wave.bench.__main__ import main as bench_main

        return bench_main(argv[1:])
    from crm_wave.config.settings import AppSettings, ConfigError

    try:
        debug = "--debug" in argv or AppSettings.load().debug
    except ConfigError as exc:  # CRM_WAVE_DEBUG or CRM_WAVE_POLICY is not usable
        from crm_wave.cli_errors import EXIT_CODES

        print(f"crm-wave: {exc}", file=sys.stderr)
        return EXIT_CODES["config"]
    if argv[:1] not in (["dev"], ["demo"], ["sim"]):  # the variables of a running `crm-wave dev`, if any
        from crm_wave.config.envfile import apply_env_file

        apply_env_file(os.environ, _data_root())
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    args.debug = debug
    if debug:
        return int(args.func(args) or 0)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for a person; --debug for the traceback
        from crm_wave.cli_errors import explain

        error = explain(exc, env_prefix=_env_prefix(getattr(args, "tenant", None)))
        print(f"crm-wave {args.command}: {error.message}", file=sys.stderr)
        return error.code


def _env_prefix(tenant: str | None) -> str:
    """The tenant's variable prefix for messages ("" for the default tenant or when unknown)."""
    from crm_wave.config.tenants import TenantError, get_tenant

    try:
        return get_tenant(_data_root(), tenant).env_prefix if tenant else ""
    except (TenantError, OSError, ValueError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
