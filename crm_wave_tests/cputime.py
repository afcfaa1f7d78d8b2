"""Per-test CPU seconds, written when `CRM_WAVE_TEST_CPU` names a file (off otherwise).

On a shared machine a test's wall time says more about the load than about the test; its CPU
seconds do not. One tab-separated line per test (setup, call and teardown together): node id,
CPU-s of the pytest process (the test and the simulator threads it started), CPU-s of the child
processes it waited for (`crm-wave` subprocesses, the benchmark's stages), wall seconds. Each
xdist worker appends its own lines. `python -m crm_wave_tests.cputime FILE` sums them by file.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Measure one test's CPU and wall seconds around its setup, call and teardown."""
    path = os.environ.get("CRM_WAVE_TEST_CPU")
    if not path:
        yield
        return
    own, kids, wall = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.monotonic()
    yield
    line = (f"{item.nodeid}\t{_cpu(resource.RUSAGE_SELF) - own:.2f}\t{_cpu(resource.RUSAGE_CHILDREN) - kids:.2f}"
            f"\t{time.monotonic() - wall:.2f}\n")
    with open(path, "a") as f:  # one short append per test: the two workers' lines do not interleave
        f.write(line)


def summary(path: str, top: int = 40) -> str:
    """The files by total CPU-s (own + children), and the totals."""
    by_file: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for line in open(path):
        nodeid, own, kids, wall = line.rstrip("\n").split("\t")
        row = by_file[nodeid.split("::")[0]]
        row[0] += float(own)
        row[1] += float(kids)
        row[2] += float(wall)
        row[3] += 1
    rows = sorted(by_file.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    out = [f"{'file':70} {'tests':>5} {'own':>8} {'child':>8} {'wall':>8}"]
    out += [f"{f:70} {n:5d} {o:8.1f} {c:8.1f} {w:8.1f}" for f, (o, c, w, n) in rows[:top]]
    tot = [sum(r[i] for _, r in rows) for i in range(4)]
    out.append(f"{'total':70} {int(tot[3]):5d} {tot[0]:8.1f} {tot[1]:8.1f} {tot[2]:8.1f}")
    return "\n".join(out)


if __name__ == "__main__":
    print(summary(sys.argv[1]))
