"""The clients' own messages name the tenant's variables: `ACME_CRM_API_TOKEN`, not `CRM_API_TOKEN`.

Clients built from a tenant's settings (`crm_wave.config.clients`, as every command, run and sensor
builds them) against the real simulators on loopback, with a wrong token or business id."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from crm_wave.config.clients import crm_client, wave_client
from crm_wave.config.settings import Settings
from crm_wave.systems.crm.client import CrmAuthError
from crm_wave.systems.crm.simulator import create_app
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveNotFound

SECRET = "s3cret-token-value"
WRONG = "wr0ng-token-value"


def _settings(crm_url: str, wave_url: str, wave_token: str, tmp_path: Path, **extra: str) -> Settings:
    env = {"ACME_CRM_BASE_URL": crm_url, "ACME_CRM_API_TOKEN": WRONG, "ACME_WAVE_GRAPHQL_URL": wave_url,
           "ACME_WAVE_API_TOKEN": wave_token, "ACME_WAVE_REQUESTS_PER_MINUTE": "0", **extra}
    return Settings.from_env(env, env_prefix="ACME_", data_dir=tmp_path)


@pytest.mark.parametrize("style", ["contract", "paged-number"])
def test_a_refused_crm_token_names_the_tenants_variable(style: str, tmp_path: Path, wave_sim) -> None:
    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token=SECRET, style=style)) as base:
        settings = _settings(f"{base}/api/v1", wave_sim.url, wave_sim.token, tmp_path, ACME_CRM_PROFILE=style)
        with crm_client(settings, max_attempts=1) as crm, pytest.raises(CrmAuthError) as err:
            crm.read_all("customers")
    message = str(err.value)
    assert "check the CRM token: ACME_CRM_API_TOKEN" in message, message
    assert WRONG not in message and SECRET not in message


def test_an_unknown_wave_business_names_the_tenants_variable(tmp_path: Path, crm_sim, wave_sim) -> None:
    nope = base64.b64encode(b"Business:nope").decode()
    settings = _settings(crm_sim.url, wave_sim.url, wave_sim.token, tmp_path, ACME_WAVE_BUSINESS_ID=nope)
    with wave_client(settings, max_attempts=1) as wave, pytest.raises(WaveNotFound) as err:
        wave.list_customers()
    assert "check ACME_WAVE_BUSINESS_ID" in str(err.value), str(err.value)
