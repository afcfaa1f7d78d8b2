"""Tenants: registry, isolation of data and systems, and runs queued on a Postgres-backed Dagster."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from crm_wave.bench.tenants import start_daemon, stop_daemon

from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app
from crm_wave.config.tenants import TenantError, add_tenant, get_tenant, load_tenants, remove_tenant

ROOT = Path(__file__).resolve().parents[2]


def test_registry_holds_names_of_variables_never_values(tmp_path):
    acme = add_tenant(tmp_path, "acme")
    assert acme.var("WAVE_API_TOKEN") == "ACME_WAVE_API_TOKEN"
    assert acme.data_dir(tmp_path) == tmp_path / "tenants" / "acme"
    assert [t.name for t in load_tenants(tmp_path)] == ["default", "acme"]
    with pytest.raises(TenantError, match="exists already"):
        add_tenant(tmp_path, "acme")
    with pytest.raises(TenantError, match="use 1-40"):
        add_tenant(tmp_path, "Bad Name")
    env = {"ACME_CRM_BASE_URL": "http://c", "ACME_CRM_API_TOKEN": "s3cret", "ACME_WAVE_GRAPHQL_URL": "http://w",
           "ACME_WAVE_API_TOKEN": "t0ken"}
    settings = get_tenant(tmp_path, "acme").settings(env, tmp_path)
    assert settings.crm.api_token.get_secret_value() == "s3cret" and settings.wave.graphql_url == "http://w"
    assert "s3cret" not in repr(settings) and "s3cret" not in str(settings) and "t0ken" not in repr(settings)
    assert "s3cret" not in (tmp_path / "tenants.json").read_text()
    with pytest.raises(TenantError, match="ACME_"):
        get_tenant(tmp_path, "acme").settings({}, tmp_path)
    remove_tenant(tmp_path, "acme")
    assert [t.name for t in load_tenants(tmp_path)] == ["default"]


@pytest.fixture
def two_tenants(tmp_path, monkeypatch):
    """Four simulators: a CRM and a Wave business for each of tenants acme and globex."""
    data = tmp_path / "data"
    with ExitStack() as stack:
        for name in ("acme", "globex"):
            t = add_tenant(data, name)
            crm = stack.enter_context(serve_in_thread(crm_app(db_path=tmp_path / f"{name}-crm.db", token=f"{name}-c")))
            wave = stack.enter_context(serve_in_thread(wave_app(db_path=tmp_path / f"{name}-wave.db", token=f"{name}-w")))
            for key, value in {"CRM_BASE_URL": f"{crm}/api/v1", "CRM_API_TOKEN": f"{name}-c",
                               "WAVE_GRAPHQL_URL": f"{wave}/graphql/public", "WAVE_API_TOKEN": f"{name}-w",
                               "WAVE_REQUESTS_PER_MINUTE": "0"}.items():
                monkeypatch.setenv(t.var(key), value)
            with CrmClient(base_url=f"{crm}/api/v1", token=f"{name}-c") as c:
                for i in range(3):
                    c.create("customers", {"Type": "organization", "Name": f"{name} customer {i}",
                                           "Email": f"c{i}@{name}.example"}, idempotency_key=f"{name}{i}")
        monkeypatch.setenv("CRM_WAVE_DATA_DIR", str(data))
        yield data


def _wave_emails(name: str) -> set[str]:
    t = get_tenant(Path(os.environ["CRM_WAVE_DATA_DIR"]), name)
    with WaveClient(url=os.environ[t.var("WAVE_GRAPHQL_URL")], token=os.environ[t.var("WAVE_API_TOKEN")]) as w:
        return {c["email"] for c in w.list_customers()}


def _file_emails(data: Path, name: str) -> set[str]:
    # Through the store's lock: runs launched by the schedule may still be writing this file.
    from crm_wave.store import Store

    with Store(data / "tenants" / name / "crm_wave.duckdb").connect() as con:
        return {r[0] for r in con.execute("SELECT json_extract_string(body, '$.Email') FROM crm_customer").fetchall()}


def test_each_tenant_syncs_into_its_own_file_and_systems(two_tenants):
    from crm_wave.defs.run import run_sync_job

    run_sync_job(tenant="acme")
    assert _wave_emails("acme") == {f"c{i}@acme.example" for i in range(3)}
    assert _wave_emails("globex") == set()  # untouched until its own run
    run_sync_job(tenant="globex")
    assert _wave_emails("globex") == {f"c{i}@globex.example" for i in range(3)}
    assert _file_emails(two_tenants, "acme") == {f"c{i}@acme.example" for i in range(3)}
    assert _file_emails(two_tenants, "globex") == {f"c{i}@globex.example" for i in range(3)}
    assert not (two_tenants / "crm_wave.duckdb").exists()  # the default tenant was never run


def _postgres_env() -> dict[str, str] | None:
    keys = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
    if all(os.environ.get(k) for k in keys):
        return {k: os.environ[k] for k in keys}
    if os.environ.get("CI"):
        pytest.fail("CI must start PostgreSQL (.ci/postgres.sh) for the multi-tenant test")
    pytest.skip("no PostgreSQL here: run `eval $(bash .ci/postgres.sh)` first")


@contextlib.contextmanager
def postgres_db(monkeypatch):
    """A database of its own on the CI's PostgreSQL (`DAGSTER_PG_DB` names it), and an autocommit connection to
    the server's own database: `(connection, name)`. Dropped afterwards."""
    import uuid

    import psycopg2

    pg = _postgres_env()
    name = f"crm_wave_test_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(host=pg["DAGSTER_PG_HOST"], port=pg["DAGSTER_PG_PORT"], user=pg["DAGSTER_PG_USERNAME"],
                             password=pg["DAGSTER_PG_PASSWORD"], dbname=pg["DAGSTER_PG_DB"])
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    try:
        yield admin, name
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def fresh_postgres_db(monkeypatch):
    """A database of its own on the CI's PostgreSQL, dropped afterwards."""
    with postgres_db(monkeypatch) as (_, name):
        yield name


@pytest.mark.timeout(600)  # two Dagster runs through the daemon; the wait below gives up at 420 s
def test_runs_for_two_tenants_are_queued_and_complete_on_postgres(two_tenants, fresh_postgres_db, tmp_path):
    import dagster as dg

    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.local-postgres.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    daemon = start_daemon(env, log=tmp_path / "daemon.log")
    try:
        os.environ["DAGSTER_HOME"] = str(home)
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            instance.add_dynamic_partitions("tenants", ["acme", "globex"])
            for name in ("acme", "globex"):
                subprocess.run([sys.executable, "-m", "dagster", "job", "launch", "-w", str(ROOT / "workspace.yaml"),
                                "-j", "sync_job", "--tags", json.dumps({"dagster/partition": name, "tenant": name})],
                               env=env, cwd=ROOT, check=True, capture_output=True)
            deadline = time.monotonic() + 420
            runs = {}
            while time.monotonic() < deadline:
                runs = {name: [r for r in instance.get_runs(filters=dg.RunsFilter(job_name="sync_job", tags={"tenant": name}))]
                        for name in ("acme", "globex")}
                if all(rs and rs[-1].status in (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE)
                       for rs in runs.values()):
                    break
                assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                time.sleep(1)
            for name, rs in runs.items():
                run = rs[-1]
                assert run.status == dg.DagsterRunStatus.SUCCESS, (name, run.status)
                kinds = {e.dagster_event.event_type_value for e in instance.all_logs(run.run_id) if e.dagster_event}
                assert {"PIPELINE_ENQUEUED", "PIPELINE_STARTING", "PIPELINE_SUCCESS"} <= kinds  # queued, then launched
    finally:
        os.environ.pop("DAGSTER_HOME", None)
        stop_daemon(daemon)
    assert _wave_emails("acme") == {f"c{i}@acme.example" for i in range(3)}
    assert _wave_emails("globex") == {f"c{i}@globex.example" for i in range(3)}
    assert _file_emails(two_tenants, "acme").isdisjoint(_file_emails(two_tenants, "globex"))
