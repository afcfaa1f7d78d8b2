"""`make dev`: the simulators (seeded once) and `dg dev` with a persistent Dagster instance."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

from crm_wave.demo import CRM_TOKEN, WAVE_TOKEN
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.simulator import create_app as wave_app

DAGSTER_YAML = """\
# Written by `crm-wave dev`: one run per tenant at a time (runs carry the tag `tenant`), tenants in parallel.
run_queue:
  max_concurrent_runs: 4
  tag_concurrency_limits:
    - key: "tenant"
      value:
        applyLimitPerUniqueValue: true
      limit: 1
telemetry:
  enabled: false
"""


def run_dev(data_dir: Path, *, port: int = 3000) -> int:
    """Serve both simulators on 8701/8702 and run `dg dev` until interrupted."""
    sim_dir = data_dir / "sim"
    sim_dir.mkdir(parents=True, exist_ok=True)
    crm_db = sim_dir / "crm.sqlite3"
    if not crm_db.exists():
        seed_crm(crm_db, seed=42, customers=20, products=10, orders=15)
    home = (data_dir / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(DAGSTER_YAML)
    with ExitStack() as stack:
        crm = stack.enter_context(serve_in_thread(crm_app(db_path=crm_db, token=CRM_TOKEN), port=8701))
        wave = stack.enter_context(serve_in_thread(wave_app(db_path=sim_dir / "wave.sqlite3", token=WAVE_TOKEN), port=8702))
        env = {**os.environ, "DAGSTER_HOME": str(home), "CRM_BASE_URL": f"{crm}/api/v1", "CRM_API_TOKEN": CRM_TOKEN,
               "WAVE_GRAPHQL_URL": f"{wave}/graphql/public", "WAVE_API_TOKEN": WAVE_TOKEN, "WAVE_REQUESTS_PER_MINUTE": "0",
               "CRM_WAVE_DATA_DIR": str(data_dir.resolve())}
        print(f"CRM simulator {crm}/api/v1, Wave simulator {wave}/graphql/public; Dagster UI on http://127.0.0.1:{port}")
        try:
            return subprocess.call([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-p", str(port)], env=env)
        except KeyboardInterrupt:
            return 0
