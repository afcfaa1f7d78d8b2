"""Smaller operator complaints: `plan` shows long values whole; `dagster dev` loads without warnings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from crm_wave.cli import main

ROOT = Path(__file__).parents[1]


def test_plan_prints_long_values_whole(rig, crm_sim, wave_sim, tmp_path, monkeypatch, capsys):
    for k, v in {"CRM_BASE_URL": crm_sim.url, "CRM_API_TOKEN": crm_sim.token, "WAVE_GRAPHQL_URL": wave_sim.url,
                 "WAVE_API_TOKEN": wave_sim.token, "CRM_WAVE_DATA_DIR": str(tmp_path),
                 "WAVE_REQUESTS_PER_MINUTE": "0"}.items():
        monkeypatch.setenv(k, v)
    long = " ".join(f"word{i}" for i in range(500)) + " THE-END"  # about 4000 characters
    rig.crm_create("products", {"Name": "Long one", "UnitPrice": "5.00", "Description": long})
    assert main(["plan"]) == 2
    out = capsys.readouterr().out
    assert f'    Description: null -> "{long}"' in out
    assert main(["plan", "--format", "json"]) == 2
    assert long in capsys.readouterr().out


def test_dagster_loads_the_workspace_without_location_name_warnings(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    done = subprocess.run([sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-2000:]
    assert "Validation successful for code location crm_wave." in output
    assert "does not match" not in output
