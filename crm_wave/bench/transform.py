"""Transform at scale: collect (from in-memory API pages), global and share, full and incremental.

One run works on a fresh DuckDB file:

1. a full pass: every dataset collected from the synthetic pages (`data.FakeCrm` /
   `data.FakeWave` serve them page by page, as the API clients do), then the global and
   share steps of customers, products and orders;
2. an incremental pass after 1 % of the CRM customers changed: every dataset collected
   again incrementally (the CRM returns the changed customers, everything else returns
   nothing), then the global and share steps of every entity;
3. the storage floor: the store alone writing the tables the passes wrote (datasets, golden,
   share, links, agreed values) from Arrow, with no logic at all, into a fresh DuckDB file (the
   golden tables as the Parquet polars writes, crm_wave/store/files.py): what any pass that
   keeps the same tables costs at least.

Between them, the analysts' snapshot each sync publishes (`bench/snapshots.py`): the first
after the full pass, one more with nothing changed, one after the incremental pass, and one after
each of three more incremental passes of the same 1 % (`bench.snapshots.ONE_PERCENT`, untimed passes), over which the
chains the publishes grow are merged or compacted.

Times are per stage. Making the synthetic pages is the "API"'s work, not the sync's: it
is timed on its own (`source`) and left out of the collect figures.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, UTC
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from crm_wave.bench.data import Dataset, FakeCrm, FakeWave, Scale
from crm_wave.bench.snapshots import ONE_PERCENT, publish_timed
from crm_wave.store import files
from crm_wave.store.connection import create_file
from crm_wave.store.datasets import dataset_sql
from crm_wave.store.db import Store
from crm_wave.sync.collect import collect
from crm_wave.sync.global_step import build_global
from crm_wave.sync.names import ENTITIES, dataset, global_table, share_table
from crm_wave.sync.share_step import build_share

__all__ = ["run_transform", "peak_rss_mb", "storage_floor", "output_tables"]

SIDES = ("crm", "wave")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TimedData(Dataset):
    """A `Dataset` that adds the time spent making pages to `source_s`."""

    source_s: float = 0.0

    def pages(self, system: str, entity: str, indices: list[int] | None = None) -> Iterator[list[dict[str, Any]]]:
        inner = super().pages(system, entity, indices)
        while True:
            t = time.perf_counter()
            try:
                page = next(inner)
            except StopIteration:
                self.source_s += time.perf_counter() - t
                return
            self.source_s += time.perf_counter() - t
            yield page


def _progress(stage: str, seconds: float) -> None:
    """A stage's time as it ends, on stderr or appended to the file `CRM_WAVE_BENCH_PROGRESS` names (the
    worker's stderr is shown only if it fails: a long run that is stopped still shows how far it got)."""
    line = f"[transform] {stage}: {seconds:.2f} s, peak RSS {peak_rss_mb():.0f} MB, load {os.getloadavg()[0]:.1f}\n"
    if path := os.environ.get("CRM_WAVE_BENCH_PROGRESS"):
        with open(path, "a") as f:
            f.write(line)
    else:
        sys.stderr.write(line)


def _pass(store: Store, data: _TimedData, clients: dict[str, Any], now: datetime, *, full: bool,
          cpu: dict[str, float] | None = None) -> dict[str, float]:
    """Wall seconds of each stage of one pass (a collect's less the synthetic source's); `cpu`, if given, gets
    each stage's CPU seconds, every thread of the process counted (a collect's less the source's, which is
    pure Python on the collect's thread: its wall time)."""
    out: dict[str, float] = {}
    cpu = {} if cpu is None else cpu

    def timed(stage: str, run: Callable[[], object], less: Callable[[], float] = lambda: 0.0) -> None:
        t, c = time.perf_counter(), time.process_time()
        run()
        out[stage] = time.perf_counter() - t - less()
        cpu[stage] = max(0.0, time.process_time() - c - less())
        _progress(stage, out[stage])

    for entity in ENTITIES:
        for system in SIDES:
            data.source_s = 0.0
            timed(f"collect {system} {entity}",
                  functools.partial(collect, store, system, entity, clients[system], now, full=full), lambda: data.source_s)
    for entity in ENTITIES:
        timed(f"global {entity}", functools.partial(build_global, store, entity, now))
        for target in SIDES:
            timed(f"share {target} {entity}", functools.partial(build_share, store, target, entity))
    return out


def run_transform(scale: Scale, seed: int, workdir: Path, *, edit_share: float = 0.01) -> dict[str, Any]:
    """One full pass and one incremental pass; stage times in seconds, row counts, peak RSS."""
    data = _TimedData(scale, seed)
    crm, wave = FakeCrm(data), FakeWave(data)
    clients = {"crm": crm, "wave": wave}
    store = Store(workdir / "bench.duckdb")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    full_cpu: dict[str, float] = {}
    full = _pass(store, data, clients, now, full=True, cpu=full_cpu)
    rss_full = peak_rss_mb()
    folder = workdir / "snapshots"
    snapshots = {"first": publish_timed(store, folder, now),
                 "no change": publish_timed(store, folder, now + timedelta(seconds=1))}
    changed = data.edit("crm", "customer", edit_share)
    crm.pending["customer"] = changed
    incremental = _pass(store, data, clients, now, full=False)
    rss = peak_rss_mb()
    snapshots[ONE_PERCENT[0]] = publish_timed(store, folder, now + timedelta(seconds=2))
    # The same customers changed again, pass after pass: the chains the publishes grow are merged or compacted
    # every few of them, so the goal is judged on the mean of the `ONE_PERCENT` publishes (docs/benchmarks.md,
    # "Session 24").
    for n, name in enumerate(ONE_PERCENT[1:], start=2):
        crm.pending["customer"] = data.edit("crm", "customer", edit_share, version=n)
        _pass(store, data, clients, now, full=False)
        snapshots[name] = publish_timed(store, folder, now + timedelta(seconds=1 + n))
    floor = storage_floor(store, workdir)
    with store.connect() as con:
        rows = {name: con.execute(f"SELECT count(*) FROM {name}").fetchall()[0][0]
                for name in ("global_customer", "global_product", "global_order", "crm_customer", "wave_customer",
                             "crm_order", "wave_invoice")}
        share = dict(con.execute("SELECT 'wave_customer_share', count(*) FROM wave_customer_share UNION ALL "
                                 "SELECT 'crm_customer_share', count(*) FROM crm_customer_share").fetchall())
    return {"full": full, "full_cpu": full_cpu, "incremental": incremental, "changed": len(changed), "rows": {**rows, **share},
            "peak_rss_mb_full": rss_full, "peak_rss_mb": rss, "db_mb": store.path.stat().st_size / 1e6,
            "files_mb": sum(p.stat().st_size for p in store.files_root.rglob("*.parquet")) / 1e6,
            "floor": floor, "snapshots": snapshots}


def _entity_tables(entity: str, *, datasets: bool = True) -> list[str]:
    return [*((dataset(s, entity) for s in SIDES) if datasets else ()), global_table(entity),
            *(share_table(s, entity) for s in SIDES)]


def storage_floor(store: Store, workdir: Path, groups: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Seconds DuckDB alone takes to write tables of `store` (read into Arrow first, untimed; written
    into a fresh file in the store's format with `CREATE TABLE AS`, a dataset into its own definition;
    committed and closed; a table the store keeps as files (a large golden or share table, a large dataset) as
    polars writes its Parquet, crm_wave/store/files.py), per group of tables. By
    default the tables a pass writes: per entity its datasets, golden and share tables, and
    `links+agreed`."""
    if groups is None:
        groups = {**{e: _entity_tables(e) for e in ENTITIES}, "links+agreed": ["links", "agreed"]}
    out: dict[str, float] = {}
    datasets = {dataset(s, e) for s in SIDES for e in ENTITIES}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for group, tables in groups.items():
            out[group] = 0.0
            for table in tables:
                with store.connect() as con:
                    arrow = con.execute(f"SELECT * FROM {table}").arrow().read_all()
                    as_files = files.current(con, table) is not None  # as the store keeps it
                if as_files:
                    frame = pl.from_arrow(arrow)
                    t = time.perf_counter()
                    assert isinstance(frame, pl.DataFrame)
                    frame.write_parquet(Path(tmp) / f"{table}.parquet", compression=files.COMPRESSION,
                                       compression_level=files.COMPRESSION_LEVEL)
                    out[group] += time.perf_counter() - t
                    del arrow, frame
                    continue
                target_path = Path(tmp) / f"{table}.duckdb"
                create_file(target_path)  # the store's file format and dataset definition, no logic
                target = duckdb.connect(str(target_path))
                t = time.perf_counter()
                target.execute("BEGIN")
                target.register("_rows", arrow)
                if table in datasets:
                    target.execute(dataset_sql(target, table))
                    target.execute(f"INSERT INTO {table} SELECT * FROM _rows")
                else:
                    target.execute(f"CREATE TABLE {table} AS SELECT * FROM _rows")
                target.execute("COMMIT")
                target.close()
                out[group] += time.perf_counter() - t
                del arrow
    return out


def output_tables() -> list[str]:
    """The tables the global and share steps write (golden, share, links, agreed values)."""
    return [*(t for e in ENTITIES for t in _entity_tables(e, datasets=False)), "links", "agreed"]
