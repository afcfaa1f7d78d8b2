"""Shared fixtures: real simulators on free loopback ports, each with its own SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from crm_wave.systems.serve import serve_in_thread

pytest_plugins = ["crm_wave_tests.rig", "crm_wave_tests.cputime"]

WAVE_TOKEN = "wave-test-token"
CRM_TOKEN = "crm-test-token"


@dataclass(frozen=True)
class Sim:
    """A running simulator: `base` is http://127.0.0.1:PORT, `url` the API endpoint."""

    base: str
    url: str
    token: str
    db_path: Path
    style: str = "contract"  # the CRM simulator's API shape, and the CRM profile of that name


@pytest.fixture
def wave_sim(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Sim]:
    """The Wave simulator; `url` is its GraphQL endpoint. Parametrise it indirectly with "strict"
    for strict mode (locked invoices, payments keep modifiedAt, one-second modifiedAt, 2 in
    flight; the per-minute limit lifted to keep suites fast: its tests set their own)."""
    from crm_wave.systems.faults import WaveFaultSettings
    from crm_wave.systems.wave.simulator import create_app

    db = tmp_path / "wave.sqlite3"
    strict = getattr(request, "param", "default") == "strict"
    faults = WaveFaultSettings(max_in_flight=2) if strict else None
    with serve_in_thread(create_app(db_path=db, token=WAVE_TOKEN, strict=strict, faults=faults)) as base:
        yield Sim(base=base, url=f"{base}/graphql/public", token=WAVE_TOKEN, db_path=db)


@pytest.fixture
def crm_style(request: pytest.FixtureRequest) -> str:
    """The CRM simulator's style: `contract` unless a test parametrises it (indirect)."""
    return getattr(request, "param", "contract")


@pytest.fixture
def crm_sim(tmp_path: Path, crm_style: str) -> Iterator[Sim]:
    """The Custom CRM simulator; `url` is its API base (…/api/v1)."""
    from crm_wave.systems.crm.simulator import create_app

    db = tmp_path / "crm.sqlite3"
    with serve_in_thread(create_app(db_path=db, token=CRM_TOKEN, style=crm_style)) as base:
        yield Sim(base=base, url=f"{base}/api/v1", token=CRM_TOKEN, db_path=db, style=crm_style)


@pytest.fixture
def sim_env(crm_sim: Sim, wave_sim: Sim, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Sim, Sim]:
    """The default tenant's variables pointing at both simulators, data under `tmp_path`:
    what the Dagster definitions read when a run or a sensor asks for clients."""
    monkeypatch.setenv("CRM_BASE_URL", crm_sim.url)
    monkeypatch.setenv("CRM_API_TOKEN", crm_sim.token)
    monkeypatch.setenv("CRM_PROFILE", crm_sim.style)
    monkeypatch.setenv("WAVE_GRAPHQL_URL", wave_sim.url)
    monkeypatch.setenv("WAVE_API_TOKEN", wave_sim.token)
    monkeypatch.setenv("CRM_WAVE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("WAVE_REQUESTS_PER_MINUTE", "0")  # the simulator needs no client-side limit
    return crm_sim, wave_sim
