"""Each paging mode and each auth mode of a profile against the simulator style that serves it, on loopback:
the listing really pages (several requests, every record once), a wrong credential is a one-line "check
the token" error naming the variable and never the secret, and `crm-wave sync` says so in one line.
The full sync both ways with edits runs for these styles in crm_wave_tests/sync/test_end_to_end.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from crm_wave.systems.crm.client import CrmAuthError, CrmClient
from crm_wave.systems.crm.profile import load_profile
from crm_wave.systems.crm.simulator import create_app
from crm_wave.systems.crm.simulator.styles import BASIC_USER
from crm_wave.systems.serve import serve_in_thread

SECRET = "s3cret-token-value"
WRONG = "wr0ng-token-value"

#: style -> (paging style of its profile, auth kind of its profile, how a raw request authenticates)
MODES = {
    "contract": ("cursor", "bearer", {"headers": {"Authorization": f"Bearer {SECRET}"}}),
    "offset": ("offset", "bearer", {"headers": {"Authorization": f"Bearer {SECRET}"}}),
    "paged": ("link_header", "header", {"headers": {"X-Api-Key": SECRET}}),
    "paged-number": ("page", "query", {"params": {"api_key": SECRET}}),
    "paged-next": ("next_url", "basic", {"auth": (BASIC_USER, SECRET)}),
}


def test_every_paging_and_auth_mode_has_a_style():
    profiles = {style: load_profile(style) for style in MODES}
    assert {p.products[0].paging.style for p in profiles.values()} == {"cursor", "offset", "page", "next_url", "link_header"}
    assert {p.auth.kind for p in profiles.values()} == {"bearer", "header", "query", "basic"}
    for style, (paging, auth, _) in MODES.items():
        assert (profiles[style].products[0].paging.style, profiles[style].auth.kind) == (paging, auth)


@pytest.mark.parametrize("style", list(MODES))
def test_the_listing_pages_and_a_wrong_credential_says_check_the_token(style: str, tmp_path: Path):
    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token=SECRET, style=style)) as base:
        url = f"{base}/api/v1"
        with CrmClient(base_url=url, token=SECRET, profile=load_profile(style)) as crm:
            made = {crm.create("products", {"Name": f"P{i}", "UnitPrice": "1.00"}, idempotency_key=f"k{i}")["Id"]
                    for i in range(120)}
            before = crm.stats.requests
            ids = [p["Id"] for p in crm.read_all("products")]
            requests = crm.stats.requests - before
        assert sorted(ids) == sorted(made)  # every record once
        if style != "contract":  # pages of 100 (offset) or 50 (the contract's cursor feed takes 1000 at a time)
            assert requests >= 2, f"{style}: {requests} request(s) for 120 records"
        _, _, good = MODES[style]
        assert httpx.get(f"{url}/products", **good).status_code == 200
        assert httpx.get(f"{url}/products").status_code in (401, 403)  # no credential at all
        with CrmClient(base_url=url, token=WRONG, profile=load_profile(style)) as crm, \
                pytest.raises(CrmAuthError) as err:
            crm.read_all("products")
    message = str(err.value)
    assert err.value.status in (401, 403) and "check the CRM token: CRM_API_TOKEN" in message
    assert "\n" not in message and WRONG not in message and SECRET not in message


@pytest.mark.parametrize("style", ["paged-number", "paged-next"])
def test_crm_wave_sync_with_a_wrong_token_says_so_in_one_line(style: str, tmp_path: Path, wave_sim):
    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token=SECRET, style=style)) as base:
        env = {**os.environ, "CRM_BASE_URL": f"{base}/api/v1", "CRM_API_TOKEN": WRONG, "CRM_PROFILE": style,
               "WAVE_GRAPHQL_URL": wave_sim.url, "WAVE_API_TOKEN": wave_sim.token, "WAVE_REQUESTS_PER_MINUTE": "0",
               "CRM_WAVE_DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run([sys.executable, "-m", "crm_wave.cli", "sync", "--once"], env=env, capture_output=True,
                              text=True, timeout=240)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "CRM_API_TOKEN" in lines[0] and "token" in lines[0], done.stderr
    assert WRONG not in done.stderr + done.stdout


def test_a_token_sent_as_a_query_parameter_never_reaches_a_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level("INFO", logger="httpx")
    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token=SECRET, style="paged-number")) as base, \
            CrmClient(base_url=f"{base}/api/v1", token=SECRET, profile=load_profile("paged-number")) as crm:
        crm.read_all("products")
    assert "api_key=[redacted]" in caplog.text  # httpx logged the request, without the token
    assert SECRET not in caplog.text


@pytest.mark.parametrize("style", list(MODES))
def test_the_probe_before_a_sync_is_one_request_not_a_full_read(style: str, tmp_path: Path):
    """`crm-wave sync` checks URL and token with `probe` first: one small request even without a change feed."""
    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token=SECRET, style=style)) as base:
        url = f"{base}/api/v1"
        with CrmClient(base_url=url, token=SECRET, profile=load_profile(style)) as crm:
            for i in range(3):
                crm.create("customers", {"Type": "organization", "Name": f"C{i}"}, idempotency_key=f"c{i}")
            before = crm.stats.requests
            crm.probe("customers")
            assert crm.stats.requests - before == 1
        with CrmClient(base_url=url, token=WRONG, profile=load_profile(style)) as crm, pytest.raises(CrmAuthError):
            crm.probe("customers")
