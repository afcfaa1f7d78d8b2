"""A DuckDB livelock the collect met: run this to see whether the collect (or a DuckDB release) still has it.

A full collect of 100,000 records or more hashes its versions and compares them with the dataset's in one
statement (`Datasets._append_part`). Fetched with `execute(...).pl()`, that statement's result streams, and in
DuckDB 1.5.6 the fetch sometimes spun forever on one core (`BatchedBufferedData::UnblockSinks` under
`StreamQueryResult::FetchInternal`): twice in the 1M benchmark, and after 175 repeats of the collect below
(docs/benchmarks.md, "Session 23"). The collect now fetches it as a relation's result (`con.sql(...).pl()`),
materialised at once.

    python -m crm_wave.bench.stream_hang --repeats 1000

Each repeat collects `--records` synthetic CRM products into a new store, as a first full read does. A
collect still running after `--limit` seconds is a hang: the stacks are printed and the process exits
with 3. Else it prints the repeats' timings and exits 0. To see the old fetch hang, run this file with
`PYTHONPATH` at a checkout before the change (c0e9aff).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HUNG = 3


def _hung(repeat: int, limit: float) -> None:
    """A collect still running after `limit` seconds: the stacks, and the process ends (a fetch that spins
    is not known to stop)."""
    print(f"repeat {repeat}: the collect has not returned after {limit:.0f} s: hung", flush=True)
    faulthandler.dump_traceback(all_threads=True)
    os._exit(HUNG)


def main(argv: list[str] | None = None) -> int:
    from crm_wave.bench.data import Dataset, FakeCrm, Scale
    from crm_wave.store.db import Store
    from crm_wave.sync.collect import collect

    parser = argparse.ArgumentParser(prog="python -m crm_wave.bench.stream_hang",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=500)
    parser.add_argument("--records", type=int, default=100_000, help="CRM products a collect reads")
    parser.add_argument("--limit", type=float, default=60.0, help="seconds after which a collect counts as hung")
    args = parser.parse_args(argv)
    crm: Any = FakeCrm(Dataset(Scale(1_000, args.records, 1_000), 42))  # what the collect needs of a CRM client
    work = Path(tempfile.mkdtemp(prefix="crm-wave-stream-hang-"))
    took: list[float] = []
    try:
        for i in range(args.repeats):
            folder = work / str(i)
            folder.mkdir()
            watchdog = threading.Timer(args.limit, _hung, (i, args.limit))
            watchdog.start()
            t = time.perf_counter()
            done = collect(Store(folder / "sync.duckdb"), "crm", "product", crm, datetime(2026, 1, 1, tzinfo=UTC), full=True)
            took.append(time.perf_counter() - t)
            watchdog.cancel()
            if done.written != args.records:
                print(f"repeat {i}: {done.written} versions written, not {args.records}", flush=True)
                return 1
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.repeats} collects of {args.records:,} records: median {statistics.median(took):.2f} s, "
          f"max {max(took):.2f} s; no hang", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
