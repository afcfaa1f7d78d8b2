"""The engine against the naive baseline (`naive.py`), on the same collected datasets.

Both start from the same DuckDB file after a full collect: the engine runs its global and
share steps (full rebuild: reading the datasets, linking, merging, diffing and writing its
tables), the naive code does the same work record by record on a copy of the file (and
writes nothing). Then the golden values and the share rows are compared, table by table.

The in-memory part is timed on its own too: linking, merging and diffing records already
mapped to canonical values, polars (`link_records`, `merge_records`, `share_diff`, ...)
against dicts; reading, mapping and (for the engine) writing left out.
"""

from __future__ import annotations

import time
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

import polars as pl

from crm_wave.bench.data import Dataset, FakeCrm, FakeWave, Scale
from crm_wave.bench.naive import naive_pass
from crm_wave.bench.transform import output_tables, storage_floor
from crm_wave.store import files
from crm_wave.store.db import Store
from crm_wave.sync.collect import collect
from crm_wave.sync.global_step import build_global
from crm_wave.sync.names import ENTITIES, global_table, share_table
from crm_wave.sync.share_step import build_share

__all__ = ["run_versus", "compare"]

SIDES = ("crm", "wave")
_NOT_COMPARED = ("how", "crm_deleted", "wave_deleted", "crm_modified", "wave_modified", "has_base",
                 "held__crm", "held__wave")


def compare(store: Store, naive: dict[str, Any]) -> dict[str, bool]:
    """`table -> equal?` for every golden and share table of `store` against the naive results."""
    out: dict[str, bool] = {}
    with store.connect() as con:
        for entity in ENTITIES:
            table = store.read_table(con, global_table(entity))
            assert table is not None, global_table(entity)
            golden = table.drop(_NOT_COMPARED).sort("global_id")
            rows = list(naive[entity]["golden"].values())
            expected = pl.DataFrame(rows, schema={c: golden.schema[c] for c in golden.columns}, orient="row") \
                if rows else golden.clear()
            out[global_table(entity)] = golden.equals(expected.select(golden.columns).sort("global_id"))
            for target in SIDES:
                share_frame = store.read_table(con, share_table(target, entity))
                assert share_frame is not None, share_table(target, entity)
                share = share_frame.sort("global_id")
                expected = pl.DataFrame(naive[entity][target], schema=share.schema, orient="row")
                out[share_table(target, entity)] = share.equals(expected)
    return out


def _time_compute() -> dict[str, Any]:
    """Time the engine's in-memory merge and diff (`global_step._merge`, `share_step.compute_share`)."""
    import crm_wave.sync.global_step as global_step
    import crm_wave.sync.share_step as share_step

    acc: dict[str, Any] = {"s": 0.0, "orig": (global_step._merge, global_step.link_records, share_step.compute_share)}

    def timed(fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc["s"] += time.perf_counter() - t
        return wrapper

    global_step._merge = timed(global_step._merge)
    global_step.link_records = timed(global_step.link_records)
    share_step.compute_share = timed(share_step.compute_share)
    return acc


def _untime_compute(acc: dict[str, Any]) -> None:
    import crm_wave.sync.global_step as global_step
    import crm_wave.sync.share_step as share_step

    global_step._merge, global_step.link_records, share_step.compute_share = acc["orig"]


def run_versus(scale: Scale, seed: int, workdir: Path) -> dict[str, Any]:
    """Collect (not timed), then time the engine's and the naive global+share steps; compare."""
    data = Dataset(scale, seed)
    clients: dict[str, Any] = {"crm": FakeCrm(data), "wave": FakeWave(data)}  # fakes of just what collect reads
    # The naive code decides records first linked with differing values as the newer side (the
    # policy before `review` became the default first-sync policy): the engine runs with the same.
    (workdir / "policy.toml").write_text('first_sync = "newest"\n')
    store = Store(workdir / "engine.duckdb")
    now = datetime(2026, 1, 1, tzinfo=UTC)
    for entity in ENTITIES:
        for system in SIDES:
            collect(store, system, entity, clients[system], now, full=True)
    copy = workdir / "naive.duckdb"
    files.copy_store(store.path, copy)  # with the datasets' Parquet parts, at 100,000 a side
    compute = _time_compute()
    t = time.perf_counter()
    # In one session of the store, as a pass runs its stages (`sync.engine.run_pass`): the file opened once, and
    # closed (checkpointed) at the end, within the time.
    with store.session():
        for entity in ENTITIES:
            build_global(store, entity, now, full=True)
            for target in SIDES:
                build_share(store, target, entity, full=True)
    engine_s = time.perf_counter() - t
    engine_compute = compute.pop("s")
    _untime_compute(compute)
    t = time.perf_counter()
    phases: dict[str, float] = {}
    naive = naive_pass(Store(copy), timings=phases)
    naive_s = time.perf_counter() - t
    equal = compare(store, naive)
    writes = storage_floor(store, workdir, {"outputs": output_tables()})["outputs"]
    records = sum(data.count(s, e) for s in SIDES for e in ENTITIES)
    return {"engine_s": engine_s, "naive_s": naive_s, "equal": equal, "records": records, "writes_floor_s": writes,
            "engine_merge_diff_s": engine_compute, "naive_merge_diff_s": phases.get("merge", 0.0) + phases.get("diff", 0.0),
            "golden_rows": {e: len(naive[e]["golden"]) for e in ENTITIES},
            "share_rows": {e: {t: len(naive[e][t]) for t in SIDES} for e in ENTITIES}}
