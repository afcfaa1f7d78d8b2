"""One rate limit for all of a tenant's processes: the requests are counted in a SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from crm_wave.config.clients import crm_client, wave_client
from crm_wave.systems.http import HttpPolicy, RetryingSender, TransientError

_WORKER = """
import json, sys, time
from crm_wave.systems.http import request_limiter
limiter = request_limiter(5, sys.argv[1], window_ms=2000)
times = []
for _ in range(6):
    assert limiter.try_acquire("wave")
    times.append(time.time())
limiter.close()
print(json.dumps(times))
"""


def test_two_processes_share_one_limit(tmp_path: Path) -> None:
    rate_file = tmp_path / "wave-requests.sqlite"
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(rate_file)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    starts = sorted(t for p in procs for t in json.loads(p.communicate(timeout=60)[0]))
    assert all(p.returncode == 0 for p in procs)
    assert len(starts) == 12
    # 5 per 2 s for both together. A start is recorded just after the limiter let it go, so a
    # process the scheduler holds back records it late: allow half a second of that (on their own
    # limiters the two processes would start 10 within milliseconds).
    busiest = max(sum(1 for t in starts if s <= t < s + 1.5) for s in starts)
    assert busiest <= 5, starts
    assert starts[-1] - starts[0] >= 4.0 - 0.5


def _sender(rate_file: Path, seen: list[httpx.Request]) -> RetryingSender:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})
    policy = HttpPolicy(requests_per_minute=1, rate_file=str(rate_file), max_rate_wait_s=0.2)
    return RetryingSender(httpx.Client(transport=httpx.MockTransport(handler)), policy, name="wave")


def test_a_second_client_waits_for_the_first_ones_budget(tmp_path: Path) -> None:
    seen: list[httpx.Request] = []
    first, second = _sender(tmp_path / "r.sqlite", seen), _sender(tmp_path / "r.sqlite", seen)
    try:
        first.send(httpx.Request("POST", "https://wave.test/graphql"), idempotent=True)
        t = time.perf_counter()
        with pytest.raises(TransientError, match="no room under the limit of 1 requests a minute within 0.2 s"):
            second.send(httpx.Request("POST", "https://wave.test/graphql"), idempotent=True)
        assert time.perf_counter() - t < 5
        assert len(seen) == 1
    finally:
        first.close()
        second.close()


def test_clients_count_in_the_tenants_data_directory(tmp_path: Path) -> None:
    env = {"CRM_BASE_URL": "http://crm.test", "CRM_API_TOKEN": "t", "WAVE_GRAPHQL_URL": "http://wave.test/graphql",
           "WAVE_API_TOKEN": "t", "CRM_WAVE_DATA_DIR": str(tmp_path)}
    with wave_client(env) as wave, crm_client({**env, "CRM_REQUESTS_PER_MINUTE": "100"}) as crm:
        assert wave.policy.requests_per_minute == 60
        assert wave.policy.rate_file == str(tmp_path / "wave-requests.sqlite")
        assert crm.policy.rate_file == str(tmp_path / "crm-requests.sqlite")
    with wave_client({**env, "WAVE_REQUESTS_PER_MINUTE": "0"}) as wave, crm_client(env) as crm:
        assert wave.policy.rate_file is None and crm.policy.rate_file is None
    for bad in ("fast", "-5", "1.5"):
        with pytest.raises(ValueError, match=f"WAVE_REQUESTS_PER_MINUTE: expected a whole number .* got '{bad}'"):
            wave_client({**env, "WAVE_REQUESTS_PER_MINUTE": bad})
