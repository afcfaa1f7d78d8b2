"""WaveClient against httpx.MockTransport: retries, errors, paging, batching, documents."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from crm_wave.config.clients import WAVE_DEFAULT_RPM, wave_client
from crm_wave.systems.http import HttpPolicy, OutcomeUnknown, TransientError
from crm_wave.systems.wave.client import (
    InputError,
    Mutation,
    MutationResult,
    WaveAuthError,
    WaveClient,
    WaveError,
    WaveGraphQLError,
)
from crm_wave_tests import wave_reads

URL = "https://wave.example/graphql/public"
TOKEN = "secret-token-xyz"
BIZ = "QnVzaW5lc3M6Yml6"
FAST = HttpPolicy(backoff_initial_s=0.001, backoff_max_s=0.01, max_attempts=5, timeout_s=5)

Handler = Callable[[httpx.Request, dict[str, Any]], httpx.Response]


class Recorder:
    """A MockTransport that records every GraphQL request body."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self._lock = threading.Lock()
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self._lock:
            self.bodies.append(body)
            self.requests.append(request)
        return self.handler(request, body)


def client_for(rec: Recorder, **kw: Any) -> WaveClient:
    kw.setdefault("business_id", BIZ)
    kw.setdefault("policy", FAST)
    return WaveClient(url=URL, token=TOKEN, transport=rec.transport, **kw)


def gql(data: Any = None, errors: list[dict[str, Any]] | None = None, status: int = 200,
        headers: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"data": data}
    if errors is not None:
        body["errors"] = errors
    return httpx.Response(status, json=body, headers=headers)


def page(connection: str, nodes: list[dict[str, Any]], current: int, total_pages: int) -> dict[str, Any]:
    return {"business": {"id": BIZ, connection: {
        "pageInfo": {"currentPage": current, "totalPages": total_pages, "totalCount": None},
        "edges": [{"node": n} for n in nodes],
    }}}


def echo_mutations(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
    """Answer a batched mutation: every op succeeds and echoes its input as the entity."""
    data = {}
    for name, value in body["variables"].items():
        i = name[1:]
        data[f"m{i}"] = {"didSucceed": True, "inputErrors": [], "customer": {"id": f"C{i}", **value}}
    return gql(data)


# ----------------------------------------------------------------- documents


def test_unknown_mutation_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown Wave mutation"):
        Mutation("customerDestroyAll", {}, "k")


# ----------------------------------------------------------------- construction


def test_repr_never_shows_token_and_auth_header_is_sent() -> None:
    rec = Recorder(lambda r, b: gql(page("customers", [], 1, 1)))
    with client_for(rec) as c:
        assert TOKEN not in repr(c)
        assert TOKEN not in str(vars(c).get("_configured_business_id"))
        c.list_customers()
    assert rec.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert rec.requests[0].method == "POST"


def test_wave_client_from_env_reads_variables_and_rate(tmp_path: Path) -> None:
    env = {"CRM_BASE_URL": "http://crm.test", "CRM_API_TOKEN": "c", "WAVE_GRAPHQL_URL": URL, "WAVE_API_TOKEN": TOKEN,
           "WAVE_BUSINESS_ID": BIZ, "WAVE_REQUESTS_PER_MINUTE": "42", "CRM_WAVE_DATA_DIR": str(tmp_path)}
    with wave_client(env) as c:
        assert c.url == URL and c.business_id == BIZ
        assert c.policy.requests_per_minute == 42
    with wave_client({k: v for k, v in env.items() if k != "WAVE_REQUESTS_PER_MINUTE"}) as c:
        assert c.policy.requests_per_minute == WAVE_DEFAULT_RPM
    with pytest.raises(ValueError, match="WAVE_API_TOKEN"):
        wave_client({k: v for k, v in env.items() if k != "WAVE_API_TOKEN"})
    with pytest.raises(ValueError, match="WAVE_REQUESTS_PER_MINUTE"):
        wave_client({**env, "WAVE_REQUESTS_PER_MINUTE": "fast"})


def test_business_id_resolved_from_single_business() -> None:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        if body.get("operationName") == "ListBusinesses":
            return gql({"businesses": {"pageInfo": {"currentPage": 1, "totalPages": 1, "totalCount": 1},
                                       "edges": [{"node": {"id": "B1", "name": "Only"}}]}})
        assert body["variables"]["businessId"] == "B1"
        return gql(page("customers", [], 1, 1))

    rec = Recorder(handler)
    with client_for(rec, business_id=None) as c:
        assert c.business_id == "B1"
        c.list_customers()
        c.list_customers()
    assert [b.get("operationName") for b in rec.bodies].count("ListBusinesses") == 1


def test_business_id_ambiguous_lists_candidates() -> None:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return gql({"businesses": {"pageInfo": {"currentPage": 1, "totalPages": 1, "totalCount": 2},
                                   "edges": [{"node": {"id": "B1", "name": "Alpha"}},
                                             {"node": {"id": "B2", "name": "Beta"}}]}})

    with client_for(Recorder(handler), business_id=None) as c:
        with pytest.raises(WaveError, match=r"B1 \(Alpha\).*B2 \(Beta\)"):
            _ = c.business_id


# ----------------------------------------------------------------- retries


def test_retry_after_is_honoured_on_429() -> None:
    calls: list[float] = []

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(429, json={"error": "rate_limited"}, headers={"Retry-After": "0.6"})
        return gql(page("customers", [{"id": "C1"}], 1, 1))

    with client_for(Recorder(handler)) as c:
        assert c.list_customers() == [{"id": "C1"}]
        assert c.stats.rate_limited == 1 and c.stats.retries == 1 and c.stats.requests == 2
    assert calls[1] - calls[0] >= 0.6


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_are_retried_even_for_creates(status: int) -> None:
    n = {"calls": 0}

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        n["calls"] += 1
        if n["calls"] <= 2:
            return httpx.Response(status, json={"error": "x"})
        return echo_mutations(request, body)

    with client_for(Recorder(handler)) as c:
        [res] = c.mutate([Mutation("customerCreate", {"businessId": BIZ, "name": "A"}, "k1")])
        assert res.ok and res.entity["name"] == "A"
        assert c.stats.retries == 2
    assert n["calls"] == 3


def test_503_forever_raises_transient_error() -> None:
    rec = Recorder(lambda r, b: httpx.Response(503, json={}))
    with client_for(rec) as c, pytest.raises(TransientError) as info:
        c.list_products()
    assert not isinstance(info.value, OutcomeUnknown)
    assert len(rec.bodies) == FAST.max_attempts


def test_create_that_got_502_raises_outcome_unknown_and_is_not_retried() -> None:
    rec = Recorder(lambda r, b: httpx.Response(502, json={"error": "bad_gateway"}))
    ops = [Mutation("customerCreate", {"businessId": BIZ, "name": f"N{i}"}, f"k{i}") for i in range(3)]
    with client_for(rec) as c, pytest.raises(OutcomeUnknown) as info:
        c.mutate(ops)
    assert len(rec.bodies) == 1
    assert info.value.keys == ["k0", "k1", "k2"]
    assert info.value.unsent_keys == [] and info.value.results == []


def test_read_that_got_502_is_retried() -> None:
    n = {"calls": 0}

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        n["calls"] += 1
        if n["calls"] == 1:
            return httpx.Response(502, json={})
        return gql(page("invoices", [{"id": "I1", "invoiceNumber": "1"}], 1, 1))

    with client_for(Recorder(handler)) as c:
        assert [i["id"] for i in c.list_invoices()] == ["I1"]


def test_patch_batch_that_got_502_is_retried() -> None:
    n = {"calls": 0}

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        n["calls"] += 1
        if n["calls"] == 1:
            return httpx.Response(502, json={})
        return echo_mutations(request, body)

    with client_for(Recorder(handler)) as c:
        [res] = c.mutate([Mutation("customerPatch", {"id": "C1", "name": "B"}, "k")])
    assert res.ok and n["calls"] == 2


def test_failure_of_a_later_batch_keeps_earlier_results_and_unsent_keys() -> None:
    n = {"calls": 0}

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        n["calls"] += 1
        if n["calls"] == 2:
            return httpx.Response(504, json={})
        return echo_mutations(request, body)

    ops = [Mutation("customerCreate", {"businessId": BIZ, "name": f"N{i}"}, f"k{i}") for i in range(7)]
    with client_for(Recorder(handler), batch_size=3) as c, pytest.raises(OutcomeUnknown) as info:
        c.mutate(ops)
    exc = info.value
    assert [r.key for r in exc.results] == ["k0", "k1", "k2"]
    assert exc.keys == ["k3", "k4", "k5"]
    assert exc.unsent_keys == ["k6"]
    assert n["calls"] == 2


# ----------------------------------------------------------------- errors


def test_unauthenticated_raises_wave_auth_error() -> None:
    rec = Recorder(lambda r, b: gql(None, [{"message": "bad token", "extensions": {"code": "UNAUTHENTICATED"}}]))
    with client_for(rec) as c:
        with pytest.raises(WaveAuthError) as info:
            c.list_customers()
        assert info.value.codes == ["UNAUTHENTICATED"]
        with pytest.raises(WaveAuthError):
            c.mutate([Mutation("customerCreate", {"businessId": BIZ, "name": "A"}, "k")])
    assert len(rec.bodies) == 2  # not retried, not split


def test_http_401_raises_wave_auth_error() -> None:
    with client_for(Recorder(lambda r, b: httpx.Response(401, text="nope"))) as c, pytest.raises(WaveAuthError):
        c.execute("{ user { id } }")


def test_graphql_errors_raise_with_codes() -> None:
    errors = [{"message": "Unknown field", "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]
    with client_for(Recorder(lambda r, b: gql(None, errors, status=400))) as c:
        with pytest.raises(WaveGraphQLError) as info:
            c.execute("{ nope }")
    assert not isinstance(info.value, WaveAuthError)
    assert info.value.codes == ["GRAPHQL_VALIDATION_FAILED"]
    assert info.value.errors[0]["message"] == "Unknown field"


def test_non_json_response_raises_wave_error() -> None:
    with client_for(Recorder(lambda r, b: httpx.Response(200, text="<html>"))) as c, pytest.raises(WaveError):
        c.execute("{ user { id } }")


# ----------------------------------------------------------------- reads


def test_paging_loop_stops_at_total_pages() -> None:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        p = body["variables"]["page"]
        return gql(page("customers", [{"id": f"C{p}a"}, {"id": f"C{p}b"}], p, 3))

    rec = Recorder(handler)
    with client_for(rec, page_size=2) as c:
        pages = list(c.iter_customers(modified_after="2024-01-01T00:00:00.000Z"))
    assert [[n["id"] for n in p] for p in pages] == [["C1a", "C1b"], ["C2a", "C2b"], ["C3a", "C3b"]]
    assert [b["variables"]["page"] for b in rec.bodies] == [1, 2, 3]
    assert {b["variables"]["pageSize"] for b in rec.bodies} == {2}
    assert {b["variables"]["modifiedAtAfter"] for b in rec.bodies} == {"2024-01-01T00:00:00.000Z"}
    assert "MODIFIED_AT_ASC" in rec.bodies[0]["query"]


def test_paging_stops_on_empty_page_even_if_total_pages_lies() -> None:
    rec = Recorder(lambda r, b: gql(page("customers", [], b["variables"]["page"], 99)))
    with client_for(rec) as c:
        assert c.list_customers() == []
    assert len(rec.bodies) == 1


def test_list_products_sends_explicit_null_is_archived() -> None:
    rec = Recorder(lambda r, b: gql(page("products", [{"id": "P1", "isArchived": True}], 1, 1)))
    with client_for(rec) as c:
        assert c.list_products()[0]["isArchived"] is True
    variables = rec.bodies[0]["variables"]
    assert "isArchived" in variables and variables["isArchived"] is None


def test_find_invoices_by_number_is_exact() -> None:
    nodes = [{"id": "I1", "invoiceNumber": "12"}, {"id": "I2", "invoiceNumber": "112"},
             {"id": "I3", "invoiceNumber": "120"}]
    rec = Recorder(lambda r, b: gql(page("invoices", nodes, 1, 1)))
    with client_for(rec) as c:
        assert [i["id"] for i in wave_reads.find_invoices_by_number(c, "12")] == ["I1"]
    assert rec.bodies[0]["variables"]["invoiceNumber"] == "12"


def test_find_products_by_name_trimmed_case_insensitive() -> None:
    nodes = [{"id": "P1", "name": " Widget "}, {"id": "P2", "name": "widget deluxe"}, {"id": "P3", "name": "WIDGET"}]
    with client_for(Recorder(lambda r, b: gql(page("products", nodes, 1, 1)))) as c:
        assert [p["id"] for p in wave_reads.find_products_by_name(c, "widget  ")] == ["P1", "P3"]


def test_find_customers_by_email_filters_exactly() -> None:
    nodes = [{"id": "C1", "email": "Ann@X.com"}, {"id": "C2", "email": "ann@x.com.au"}, {"id": "C3", "email": None}]
    rec = Recorder(lambda r, b: gql(page("customers", nodes, 1, 1)))
    with client_for(rec) as c:
        assert [n["id"] for n in wave_reads.find_customers_by_email(c, " ann@x.com ")] == ["C1"]
    assert rec.bodies[0]["variables"]["email"] == "ann@x.com"


def test_get_returns_none_when_missing() -> None:
    rec = Recorder(lambda r, b: gql({"business": {"id": BIZ, "invoice": None}}))
    with client_for(rec) as c:
        assert c.get_invoice("SW52b2ljZTo5") is None
    assert rec.bodies[0]["variables"] == {"businessId": BIZ, "id": "SW52b2ljZTo5"}


# ----------------------------------------------------------------- writes


def test_mutations_are_batched_with_values_only_in_variables() -> None:
    rec = Recorder(echo_mutations)
    evil = 'x") { id } customerDelete(input: {id: "1"}) { didSucceed } #'
    ops = [Mutation("customerCreate", {"businessId": BIZ, "name": f"{evil}{i}"}, f"k{i}") for i in range(60)]
    with client_for(rec, batch_size=25) as c:
        results = c.mutate(ops)
    assert [len(b["variables"]) for b in rec.bodies] == [25, 25, 10]
    assert all(evil not in b["query"] for b in rec.bodies)
    assert [r.key for r in results] == [f"k{i}" for i in range(60)]
    assert all(isinstance(r, MutationResult) and r.ok for r in results)
    assert results[59].entity["name"] == f"{evil}59"
    assert rec.bodies[0]["variables"]["i0"] == {"businessId": BIZ, "name": f"{evil}0"}


def test_per_entity_input_errors_do_not_fail_the_batch() -> None:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return gql({
            "m0": {"didSucceed": True, "inputErrors": [], "product": {"id": "P1"}},
            "m1": {"didSucceed": False, "product": None,
                   "inputErrors": [{"code": "REQUIRED", "message": "name is required", "path": ["input", "name"]}]},
            "m2": {"didSucceed": True, "inputErrors": None},
        })

    ops = [Mutation("productCreate", {"businessId": BIZ, "name": "A", "unitPrice": "1"}, "a"),
           Mutation("productCreate", {"businessId": BIZ, "name": "", "unitPrice": "1"}, "b"),
           Mutation("invoiceDelete", {"invoiceId": "I1"}, "c")]
    with client_for(Recorder(handler)) as c:
        a, b, d = c.mutate(ops)
    assert a.ok and a.entity == {"id": "P1"}
    assert not b.ok and b.entity is None
    assert b.errors == [InputError(code="REQUIRED", message="name is required", path=["input", "name"])]
    assert d.ok and d.entity is None and d.name == "invoiceDelete"


def test_resolver_error_on_one_alias_is_a_per_op_failure() -> None:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        return gql({"m0": {"didSucceed": True, "inputErrors": [], "customer": {"id": "C1"}}, "m1": None},
                   [{"message": "boom", "path": ["m1"], "extensions": {"code": "INTERNAL_SERVER_ERROR"}}])

    ops = [Mutation("customerPatch", {"id": "C1"}, "a"), Mutation("customerPatch", {"id": "C2"}, "b")]
    with client_for(Recorder(handler)) as c:
        a, b = c.mutate(ops)
    assert a.ok
    assert not b.ok and b.errors[0].code == "INTERNAL_SERVER_ERROR" and b.errors[0].path == ["m1"]


def test_schema_invalid_input_fails_only_its_own_op() -> None:
    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        bad = [k for k, v in body["variables"].items() if v.get("currency") == "NOPE"]
        if bad:
            return gql(None, [{"message": f"Variable '${bad[0]}' got invalid value",
                               "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}], status=400)
        return echo_mutations(request, body)

    ops = [Mutation("customerCreate", {"businessId": BIZ, "name": f"N{i}", **({"currency": "NOPE"} if i == 2 else {})},
                    f"k{i}") for i in range(4)]
    rec = Recorder(handler)
    with client_for(rec) as c:
        results = c.mutate(ops)
    assert [r.ok for r in results] == [True, True, False, True]
    assert results[2].errors[0].code == "GRAPHQL_VALIDATION_FAILED"
    assert len(rec.bodies) == 1 + 4


def test_concurrent_batches_keep_order_and_run_in_parallel() -> None:
    active = {"now": 0, "max": 0}
    lock = threading.Lock()

    def handler(request: httpx.Request, body: dict[str, Any]) -> httpx.Response:
        with lock:
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
        time.sleep(0.05)
        with lock:
            active["now"] -= 1
        return echo_mutations(request, body)

    ops = [Mutation("customerPatch", {"id": f"C{i}", "name": f"N{i}"}, f"k{i}") for i in range(100)]
    with client_for(Recorder(handler), batch_size=10, max_workers=4) as c:
        results = c.mutate(ops)
        assert c.stats.requests == 10
    assert [r.key for r in results] == [f"k{i}" for i in range(100)]
    assert [r.entity["name"] for r in results] == [f"N{i}" for i in range(100)]
    assert active["max"] > 1


def test_client_rate_limit_holds_requests_back() -> None:
    rec = Recorder(lambda r, b: gql(page("customers", [], 1, 1)))
    c = client_for(rec, policy=HttpPolicy(requests_per_minute=2))
    c.list_customers()
    c.list_customers()
    third = threading.Thread(target=c.list_customers, daemon=True)  # blocks ~60 s in the limiter
    third.start()
    third.join(timeout=0.7)
    assert third.is_alive()
    assert len(rec.bodies) == 2
