"""WaveClient meets Wave's harsher answers: typed errors, NOT_FOUND in batches, rate limits in
both forms, the in-flight limit and spurious NOT_FOUND on creates (real simulator over HTTP)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_wave.systems.faults import WaveFaultSettings
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import (
    Mutation,
    WaveBatchInterrupted,
    WaveClient,
    WaveNotFound,
    WaveRateLimited,
    WaveRejected,
)
from crm_wave.systems.wave.simulator import create_app
from crm_wave_tests import wave_reads

FAST = HttpPolicy(backoff_initial_s=0.005, backoff_max_s=0.05, max_attempts=10, timeout_s=10)
TOKEN = "client-token"


def _serve(tmp_path: Path, **kw: Any) -> Iterator[tuple[str, WaveClient]]:
    with serve_in_thread(create_app(db_path=tmp_path / "wave.sqlite3", token=TOKEN, **kw)) as base:
        with WaveClient(url=f"{base}/graphql/public", token=TOKEN, policy=FAST) as client:
            yield base, client


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[tuple[str, WaveClient]]:
    yield from _serve(tmp_path)


def _customers(wave: WaveClient, n: int) -> list[dict[str, Any]]:
    res = wave.mutate([Mutation("customerCreate", {"businessId": wave.business_id, "name": f"C{i}"}, f"c{i}")
                       for i in range(n)])
    assert all(r.ok for r in res)
    return [r.entity for r in res]  # type: ignore[misc]


def test_not_found_in_a_batch_fails_only_that_op_with_a_typed_error(sim: tuple[str, WaveClient]) -> None:
    _, wave = sim
    a, b, c = _customers(wave, 3)
    (gone,) = wave.mutate([Mutation("customerDelete", {"id": b["id"]}, "del")])
    assert gone.ok and gone.error is None
    res = wave.mutate([Mutation("customerPatch", {"id": a["id"], "name": "A"}, "a"),
                       Mutation("customerPatch", {"id": b["id"], "name": "B"}, "b"),
                       Mutation("customerPatch", {"id": c["id"], "name": ""}, "c")])
    assert res[0].ok and res[0].entity["name"] == "A"  # type: ignore[index]
    assert not res[1].ok and res[1].not_found and isinstance(res[1].error, WaveNotFound)
    assert res[1].error.codes == ["NOT_FOUND"] and res[1].error.support_ids
    assert isinstance(res[2].error, WaveRejected) and res[2].error.input_errors[0].path == ["input", "name"]
    assert wave_reads.get_customer(wave, b["id"]) is None


def test_unknown_business_is_wave_not_found_naming_the_variable(sim: tuple[str, WaveClient]) -> None:
    base, _ = sim
    import base64

    with WaveClient(url=f"{base}/graphql/public", token=TOKEN, policy=FAST,
                    business_id=base64.b64encode(b"Business:nope").decode()) as wave:
        with pytest.raises(WaveNotFound, match="WAVE_BUSINESS_ID"):
            wave.list_customers()


def test_get_invoices_reads_many_in_one_request_and_none_for_deleted(sim: tuple[str, WaveClient]) -> None:
    _, wave = sim
    (cust,) = _customers(wave, 1)
    (prod,) = [r.entity for r in wave.mutate([Mutation("productCreate", {"businessId": wave.business_id,
                                                                           "name": "P", "unitPrice": "1"}, "p")])]
    made = wave.mutate([Mutation("invoiceCreate", {"businessId": wave.business_id, "customerId": cust["id"],
                                                   "items": [{"productId": prod["id"]}]}, f"i{i}") for i in range(3)])
    ids = [r.entity["id"] for r in made]  # type: ignore[index]
    wave.mutate([Mutation("invoiceDelete", {"invoiceId": ids[1]}, "d")])
    before = wave.stats.requests
    got = wave.get_invoices(ids)
    assert wave.stats.requests - before == 1
    assert got[ids[1]] is None and got[ids[0]]["id"] == ids[0] and got[ids[2]]["invoiceNumber"] == "3"


@pytest.mark.parametrize("form", ["http", "graphql"])
def test_rate_limits_in_either_form_are_waited_out(tmp_path: Path, form: str) -> None:
    gen = _serve(tmp_path, strict=True, faults=WaveFaultSettings(
        rate_limit_per_minute=2, rate_limit_window_s=0.3, rate_limit_form=form, max_in_flight=2))
    _, wave = next(gen)
    made = _customers(wave, 2)
    for i in range(4):  # reads and writes past the limit: each is refused, waited out, then done
        wave.list_customers()
        wave.mutate([Mutation("customerPatch", {"id": made[0]["id"], "name": f"n{i}"}, "p")])
    assert wave.stats.rate_limited >= 2
    assert wave.list_customers()[0]["name"] in ("n3", "C1")
    gen.close()


def test_rate_limited_answer_that_never_clears_raises_typed_transient(tmp_path: Path) -> None:
    gen = _serve(tmp_path, strict=True, faults=WaveFaultSettings(
        rate_limit_per_minute=1, rate_limit_window_s=60, rate_limit_form="graphql"))
    base, wave = next(gen)
    short = WaveClient(url=f"{base}/graphql/public", token=TOKEN, business_id=wave.business_id,
                       policy=HttpPolicy(max_attempts=2, max_retry_after_s=0.01))
    # The one request the window allows went to finding the business.
    with pytest.raises(WaveRateLimited) as info:
        short.list_customers()
    assert info.value.retry_after and info.value.retry_after > 1
    res = short.mutate([Mutation("customerCreate", {"businessId": wave.business_id, "name": "x"}, "k")])
    assert not res[0].ok and isinstance(res[0].error, WaveRateLimited)
    short.close()
    gen.close()


def test_client_never_has_more_than_two_requests_in_flight(tmp_path: Path) -> None:
    gen = _serve(tmp_path, strict=True, faults=WaveFaultSettings(max_in_flight=2, latency_ms=50))
    _, wave = next(gen)
    wave.business_id  # noqa: B018
    errors: list[BaseException] = []

    def read() -> None:
        try:
            wave.list_customers()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and wave.stats.rate_limited == 0  # the simulator would answer a third with 429
    gen.close()


def test_spurious_not_found_on_create_is_sent_again_and_succeeds(tmp_path: Path) -> None:
    gen = _serve(tmp_path, strict=True, faults=WaveFaultSettings(not_found_rate=0.4, seed=3, max_in_flight=2))
    _, wave = next(gen)
    wave.not_found_retries = 8
    res = wave.mutate([Mutation("customerCreate", {"businessId": wave.business_id, "name": f"N{i}"}, f"k{i}")
                       for i in range(10)])
    assert all(r.ok for r in res), [r.errors for r in res if not r.ok]
    assert wave.stats.retries > 0
    assert sorted(c["name"] for c in wave.list_customers()) == sorted(f"N{i}" for i in range(10))  # no duplicates
    gen.close()


def test_batch_interrupted_is_typed_with_results_and_unsent(sim: tuple[str, WaveClient]) -> None:
    base, wave = sim
    wave.business_id  # noqa: B018
    wave.batch_size = 1
    httpx.put(f"{base}/_sim/faults", json={"error_rate": 1.0}).raise_for_status()
    wave.policy = HttpPolicy(max_attempts=1)
    wave._sender.policy = wave.policy
    with pytest.raises(WaveBatchInterrupted) as info:
        wave.mutate([Mutation("customerCreate", {"businessId": wave.business_id, "name": f"x{i}"}, f"k{i}")
                     for i in range(3)])
    assert info.value.keys == ["k0"] and info.value.unsent_keys == ["k1", "k2"] and info.value.results == []
