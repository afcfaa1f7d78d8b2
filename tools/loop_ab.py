"""(docs/benchmarks.md, Session 12) CPU of the `crm-wave sync --every 1` loop per one-edit sync: old (base) vs new code, alternating.

usage: python tools/loop_ab.py ROUNDS EDITS OLD_PYTHONPATH [VARIANTS] (OLD_PYTHONPATH: another tree's code, e.g.
`git archive OLD crm_wave | tar -x -C /tmp/old`, as /tmp/old; VARIANTS: a comma list of base,new,new-nokeep).
Each round starts a loop per variant (own data dir), waits for its first
sync, then makes EDITS edits one at a time (each waits for the loop's sync), and reads the loop's CPU.
"""
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crm_wave.bench.edit import _sims
from crm_wave.systems.crm.client import CrmClient

ROUNDS, EDITS = int(sys.argv[1]), int(sys.argv[2])
VARIANTS = [("base", sys.argv[3], {}), ("new", "", {}),
            ("new-nokeep", "", {"CRM_WAVE_SYNC_SNAPSHOT_SECONDS": "0", "CRM_WAVE_SYNC_KEEP_OPEN_SECONDS": "0"})]
if len(sys.argv) > 4:
    VARIANTS = [v for v in VARIANTS if v[0] in sys.argv[4].split(",")]
TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def syncs(root):
    try:
        return json.loads((root / "fleet" / "state.json").read_text())["default"]["syncs"]
    except Exception:
        return 0


with tempfile.TemporaryDirectory() as tmp, _sims(Path(tmp), 250, 42) as (cu, wu), CrmClient(base_url=cu, token="t") as crm:
    people = [c for c in crm.read_all("customers") if c["Type"] == "organization"]
    k = 0
    res = {v[0]: [] for v in VARIANTS}
    for r in range(ROUNDS):
        for name, pp, extra in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
            root = Path(tmp) / f"d-{name}-{r}"
            env = {**os.environ, "CRM_BASE_URL": cu, "CRM_API_TOKEN": "t", "WAVE_GRAPHQL_URL": wu, "WAVE_API_TOKEN": "t",
                   "CRM_WAVE_DATA_DIR": str(root), "WAVE_REQUESTS_PER_MINUTE": "0", **extra}
            if pp:
                env["PYTHONPATH"] = pp
            p = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--every", "1", "--quiet"], env=env,
                                 cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            while syncs(root) < 1:
                time.sleep(0.2)
            time.sleep(3)  # the first sync's snapshot
            c0, t0 = cpu(p.pid), time.monotonic()
            for _ in range(EDITS):
                x = crm.get("customers", people[k]["Id"])
                crm.patch("customers", x["Id"], {"Phone": f"+47 94 {r:02d} {k:04d}"}, if_match=x["Version"])
                k += 1
                n = syncs(root)
                while syncs(root) < n + 1:
                    time.sleep(0.1)
            c1, t1 = cpu(p.pid), time.monotonic()
            p.send_signal(signal.SIGINT)
            p.wait(timeout=120)
            res[name].append(((c1 - c0) / EDITS, (t1 - t0) / EDITS))
            print(f"round {r} {name}: {(c1 - c0) / EDITS:.3f} CPU-s per edit-sync, {(t1 - t0) / EDITS:.2f} s between edits, "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
    for name, runs in res.items():
        print(f"{name}: median {statistics.median(x[0] for x in runs):.3f} CPU-s per edit-sync "
              f"(min {min(x[0] for x in runs):.3f}), {statistics.median(x[1] for x in runs):.2f} s per edit")
