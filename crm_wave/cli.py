"""The `crm-wave` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_sim_wave(args: argparse.Namespace) -> int:
    from crm_wave.systems.serve import serve_forever
    from crm_wave.systems.wave.simulator import create_app

    app = create_app(db_path=Path(args.db), token=args.token)
    print(f"Wave simulator on http://{args.host}:{args.port}/graphql/public (db {args.db})", flush=True)
    serve_forever(app, args.host, args.port)
    return 0


def _cmd_sim_crm(args: argparse.Namespace) -> int:
    from crm_wave.systems.crm.simulator import create_app, seed

    if args.seed is not None:
        counts = seed(Path(args.db), seed=args.seed, customers=args.customers, products=args.products, orders=args.orders)
        print(f"seeded {counts}", flush=True)
    app = create_app(db_path=Path(args.db), token=args.token)
    print(f"CRM simulator on http://{args.host}:{args.port}/api/v1 (db {args.db})", flush=True)
    serve_forever(app, args.host, args.port)
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    import os
    import time

    from crm_wave.defs.run import run_sync_job
    from crm_wave.report import format_summary, state_summary
    from crm_wave.settings import Settings
    from crm_wave.store import Store

    settings = Settings.from_env(os.environ)  # fails early, naming what is missing
    while True:
        passes = run_sync_job(max_passes=args.max_passes)
        print(f"{len(passes)} pass(es)")
        print(format_summary(state_summary(Store(settings.db_path))))
        if args.once:
            return 0
        time.sleep(args.every)


def _cmd_demo(args: argparse.Namespace) -> int:
    from crm_wave.demo import run_demo

    return run_demo(Path(args.data_dir))


def _cmd_dev(args: argparse.Namespace) -> int:
    from crm_wave.dev import run_dev

    return run_dev(Path(args.data_dir), port=args.port)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="crm-wave", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("sim", help="run a local simulator of one system").add_subparsers(dest="system", required=True)
    wave = sim.add_parser("wave", help="Wave's public GraphQL API, from Wave's own schema")
    wave.add_argument("--host", default="127.0.0.1")
    wave.add_argument("--port", type=int, default=8702)
    wave.add_argument("--db", default="data/sim/wave.sqlite3")
    wave.add_argument("--token", default="wave-dev-token")
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
    crm.set_defaults(func=_cmd_sim_crm)

    sync = sub.add_parser("sync", help="run the sync job in-process against the configured systems")
    sync.add_argument("--once", action="store_true", help="one sync (passes until nothing is left to write), then exit")
    sync.add_argument("--every", type=float, default=60.0, help="seconds between syncs without --once")
    sync.add_argument("--max-passes", type=int, default=4)
    sync.set_defaults(func=_cmd_sync)

    demo = sub.add_parser("demo", help="simulators with overlapping data, two syncs with edits between, a summary")
    demo.add_argument("--data-dir", default="data")
    demo.set_defaults(func=_cmd_demo)

    dev = sub.add_parser("dev", help="simulators plus `dg dev`: the Dagster UI with schedule and sensor running")
    dev.add_argument("--data-dir", default="data")
    dev.add_argument("--port", type=int, default=3000)
    dev.set_defaults(func=_cmd_dev)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
