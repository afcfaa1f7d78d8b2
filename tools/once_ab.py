"""A/B of `crm-wave sync --once` after one CRM edit (new process), 250 customers (docs/benchmarks.md, Session 12).

usage: python tools/once_ab.py ROUNDS NAME=PYTHONPATH... ('' for the installed code; another tree's code, e.g.
`git archive OLD crm_wave | tar -x -C /tmp/old`, as /tmp/old). Each round: for each variant (order alternating
round by round), one CRM edit, then one timed `sync --once --quiet` in a new process; wall and the child's CPU.
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crm_wave.bench.edit import _sims
from crm_wave.systems.crm.client import CrmClient

N = int(sys.argv[1])
variants = [v.split("=", 1) for v in sys.argv[2:]]
extra = os.environ.get("AB_ARGS", "").split()
with tempfile.TemporaryDirectory() as tmp, _sims(Path(tmp), 250, 42) as (cu, wu), CrmClient(base_url=cu, token="t") as crm:
    env = {**os.environ, "CRM_BASE_URL": cu, "CRM_API_TOKEN": "t", "WAVE_GRAPHQL_URL": wu, "WAVE_API_TOKEN": "t",
           "CRM_WAVE_DATA_DIR": str(Path(tmp) / "d"), "WAVE_REQUESTS_PER_MINUTE": "0"}
    cmd = [sys.executable, "-m", "crm_wave.cli", "sync", "--once", "--quiet", *extra]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    people = [c for c in crm.read_all("customers") if c["Type"] == "organization"]
    res = {name: [] for name, _ in variants}
    k = 0
    for r in range(N):
        order = variants if r % 2 == 0 else variants[::-1]
        for name, pp in order:
            x = crm.get("customers", people[k]["Id"])
            crm.patch("customers", x["Id"], {"Phone": f"+47 93 {r:02d} {k:04d}"}, if_match=x["Version"])
            k += 1
            e = dict(env)
            if pp:
                e["PYTHONPATH"] = pp
            b = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            p = subprocess.run(cmd, env=e, capture_output=True, text=True, cwd=tmp)  # not the repo: -m would import its crm_wave
            w = time.perf_counter() - t
            a = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime
            if p.returncode:
                print(name, "FAILED", p.returncode, p.stderr[-2000:], flush=True)
            res[name].append((w, cpu))
            first = p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
            print(f"round {r} {name}: wall {w:.2f} s cpu {cpu:.2f} s  load {os.getloadavg()[0]:.1f}  {first}", flush=True)
    for name, runs in res.items():
        ws, cs = [x[0] for x in runs], [x[1] for x in runs]
        print(f"{name}: wall median {statistics.median(ws):.2f} (min {min(ws):.2f} max {max(ws):.2f})  "
              f"cpu median {statistics.median(cs):.2f} (min {min(cs):.2f})")
    if len(variants) == 2:
        a, b = (res[n] for n, _ in variants)
        ratios = [y[0] / x[0] for x, y in zip(a, b)]
        cr = [y[1] / x[1] for x, y in zip(a, b)]
        print(f"{variants[1][0]}/{variants[0][0]} per round: wall median {statistics.median(ratios):.2f} cpu median {statistics.median(cr):.2f}")
