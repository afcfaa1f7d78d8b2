"""`python -m crm_wave.bench --quick` runs every stage on tiny sizes, and the engine's output
equals the naive baseline's. Timings are not asserted (speed is measured only by the benchmark).

200 customers a side (not --quick's 2,000): the smoke shows every stage runs and the benchmark's
own equality check works; engine == naive on varied data is test_incremental's job."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from crm_wave.bench.snapshots import ONE_PERCENT


ISSUE_16 = {"full pass <= 25 s", "all types <= 75 s", "peak RSS <= 3 GB", "snapshots cost what changed",
            "incremental 1 % <= 5 %", "naive ratio >= 6x", "latency p95 <= 15 s", "one edit, warm worker <= 0.3 CPU-s",
            "one edit, warm worker <= 1 s wall", "sync --once one edit <= 3 s", "idle tenant: no pass",
            ">= 100 tenants per machine"}


def test_quick_benchmark_runs_and_its_equality_check_passes(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    work = tmp_path / "runs" / "bench"  # not there yet: the benchmark makes the folder it is given
    proc = subprocess.run(
        [sys.executable, "-m", "crm_wave.bench", "--quick", "--scale", "200", "--workdir", str(work), "--json", str(out)],
        capture_output=True, text=True, timeout=900, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert work.is_dir()
    assert "equality check: PASSED" in proc.stdout
    results = json.loads(out.read_text())
    assert all(results["naive"]["equal"].values()) and len(results["naive"]["equal"]) == 9  # 3 golden + 6 share
    assert results["naive"]["records"] > 0
    assert results["transform"]["rows"]["global_customer"] > 0
    assert results["transform"]["full_cpu"]["global customer"] > 0 and "CPU of the full pass" in proc.stdout
    assert results["api"]["push_wave"]["failed"] == 0
    assert results["latency"]["stages"]["push_s"] > 0
    # One edit is carried over and read back: a pass that writes, then one that finds nothing left.
    assert results["edit"]["engine_edit"]["passes"] == 2 and results["edit"]["engine_idle"]["passes"] == 1
    # Every goal of issue #16 is printed and in the results, judged or not.
    assert ISSUE_16 <= set(results["goals"]), ISSUE_16 - set(results["goals"])
    assert "goals of issue #16" in proc.stdout and "not measured in this run" in proc.stdout
    snaps = results["transform"]["snapshots"]
    assert snaps.keys() == {"first", "no change", *ONE_PERCENT} and snaps["first"]["bytes"] > 0
    # An idle tenant: a look after the converged syncs sees no change; the schedules were evaluated.
    assert results["edit"]["look_idle"]["changed"] == 0 and "schedules" in results["edit"]["idle_schedules"]
