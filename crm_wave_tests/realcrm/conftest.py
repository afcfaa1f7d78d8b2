"""BottleCRM, the real open-source CRM, for the integration test (fixture `bottlecrm`).

`REALCRM_ENV_FILE` names the `crm.env` that `crm_wave_tests/realcrm/start.sh` (run by `.ci/run` in the
background, or by hand) writes once BottleCRM answers. Without it the tests skip, unless `CI` is
set: then they wait for the file and the server (the first start migrates for minutes) and fail
if it never comes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

#: How long CI waits for BottleCRM (its first start migrates for 6-15 minutes on 2 busy cores).
WAIT_S = float(os.environ.get("REALCRM_WAIT_S", "1500"))


@dataclass(frozen=True)
class RealCrm:
    base_url: str
    token: str


def _read_env(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


#: The invoice custom field the `bottlecrm` profile keeps its create key in (`writes.create_key`).
KEY_FIELD = "crm_wave_key"


def ensure_key_field(crm: RealCrm) -> None:
    """Define the invoice custom field `crm_wave_key` once (what docs/custom-crm.md asks a BottleCRM admin to do)."""
    headers = {"Authorization": f"Bearer {crm.token}"}
    listed = httpx.get(f"{crm.base_url}/api/custom-fields/", params={"target_model": "Invoice", "include_counts": "false"},
                       headers=headers, timeout=60)
    listed.raise_for_status()
    if any(d.get("key") == KEY_FIELD for d in listed.json().get("definitions", [])):
        return
    made = httpx.post(f"{crm.base_url}/api/custom-fields/", headers=headers, timeout=60,
                      json={"target_model": "Invoice", "key": KEY_FIELD, "label": "crm-wave sync key", "field_type": "text"})
    assert made.status_code == 201, made.text[:300]


@pytest.fixture(scope="session")
def bottlecrm() -> Iterator[RealCrm]:
    """A running BottleCRM: its base URL and personal access token."""
    env_file = os.environ.get("REALCRM_ENV_FILE")
    in_ci = bool(os.environ.get("CI"))
    if not env_file:
        if in_ci:
            pytest.fail("REALCRM_ENV_FILE is not set: .ci/run starts BottleCRM and exports it")
        pytest.skip("BottleCRM is not running here (set REALCRM_ENV_FILE to its crm.env; see docs/custom-crm.md)")
    path = Path(env_file)
    deadline = time.monotonic() + (WAIT_S if in_ci else 5)
    last = "its crm.env was never written"
    while time.monotonic() < deadline:
        failed = path.parent / "failed"  # .ci/run writes the tail of start.sh's log here when it fails
        if failed.is_file():
            pytest.fail(f"BottleCRM did not start:\n{failed.read_text()}")
        if path.is_file() and path.stat().st_size:
            env = _read_env(path)
            try:
                if httpx.get(f"{env['CRM_BASE_URL']}/healthz/", timeout=5).status_code == 200:
                    crm = RealCrm(base_url=env["CRM_BASE_URL"], token=env["CRM_TOKEN"])
                    ensure_key_field(crm)
                    yield crm
                    return
                last = "/healthz/ did not answer 200"
            except (httpx.HTTPError, KeyError) as exc:
                last = f"{type(exc).__name__}: {exc}"
        time.sleep(5)
    message = f"BottleCRM at {env_file} is not up: {last}"
    if in_ci:
        pytest.fail(message)
    pytest.skip(message)
