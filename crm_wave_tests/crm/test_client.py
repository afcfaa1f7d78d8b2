"""`CrmClient` against the real simulator; `httpx.MockTransport` only for naming and Retry-After."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from crm_wave.systems.crm.client import (
    CrmAuthError,
    CrmClient,
    CrmError,
    CrmNotFound,
    CrmPage,
    CrmValidationError,
    CrmVersionMismatch,
)
from crm_wave.systems.crm.naming import CrmNaming
from crm_wave.systems.http import HttpPolicy, TransientError

FAST = HttpPolicy(backoff_initial_s=0.001, backoff_max_s=0.01, max_attempts=40, timeout_s=10)


@pytest.fixture
def client(crm_sim: Any) -> Iterator[CrmClient]:
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, policy=FAST) as c:
        yield c


def _faults(sim: Any, **settings: Any) -> None:
    httpx.put(f"{sim.base}/_sim/faults", json=settings).raise_for_status()


def _org(i: int) -> dict[str, Any]:
    return {"Type": "organization", "Name": f"Org {i} AS", "CustomerNumber": f"N{i}"}


# ---------------------------------------------------------------------- reads


def test_read_changes_pages_and_cursor(client: CrmClient) -> None:
    made = [client.create("products", {"Name": f"P{i}", "UnitPrice": "1"}, idempotency_key=f"p{i}") for i in range(25)]
    pages = list(client.read_changes("products", None, limit=10))
    assert all(isinstance(p, CrmPage) for p in pages)
    assert [len(p.items) for p in pages] == [10, 10, 5]
    assert [p.has_more for p in pages] == [True, True, False]
    assert [i["Id"] for p in pages for i in p.items] == [m["Id"] for m in made]
    cursor = pages[-1].next_cursor
    assert cursor
    client.patch("products", made[3]["Id"], {"Sku": "X"}, if_match=None)
    client.delete("products", made[4]["Id"], if_match=None)
    changes = [i for p in client.read_changes("products", cursor) for i in p.items]
    assert [(i["Id"], i.get("Deleted", False)) for i in changes] == [(made[3]["Id"], False), (made[4]["Id"], True)]
    with pytest.raises(ValueError, match="limit"):
        next(client.read_changes("products", None, limit=5000))


def test_read_all_has_no_tombstones(client: CrmClient) -> None:
    ids = [client.create("customers", _org(i), idempotency_key=f"c{i}")["Id"] for i in range(12)]
    for id_ in ids[:3]:
        client.delete("customers", id_, if_match=1)
    client.patch("customers", ids[5], {"City": "Oslo"}, if_match=1)
    everything = client.read_all("customers", limit=4)
    assert sorted(e["Id"] for e in everything) == sorted(ids[3:])
    assert not any(e.get("Deleted") for e in everything)
    assert next(e for e in everything if e["Id"] == ids[5])["City"] == "Oslo"


def test_get_and_errors(client: CrmClient, crm_sim: Any) -> None:
    c = client.create("customers", _org(1), idempotency_key="k")
    assert client.get("customers", c["Id"]) == c
    assert client.get("customers", "C0") is None
    assert client.get("customers", "a/b?c") is None  # ids are escaped into the path
    with pytest.raises(CrmNotFound) as nf:
        client.delete("customers", "C0", if_match=None)
    assert nf.value.status == 404 and nf.value.code == "not_found"
    with pytest.raises(CrmValidationError) as bad:
        client.create("customers", {"Type": "organization", "Name": "X", "Email": "nope"}, idempotency_key="k2")
    assert (bad.value.status, bad.value.code, bad.value.field) == (422, "validation_failed", "Email")
    assert "Email" in str(bad.value) and "nope" in bad.value.message
    with pytest.raises(CrmValidationError) as dup:
        client.create("customers", _org(1), idempotency_key="k3")
    assert (dup.value.status, dup.value.field) == (409, "CustomerNumber")
    with pytest.raises(CrmValidationError) as unknown:
        client.patch("customers", c["Id"], {"Colour": "red"}, if_match=None)
    assert unknown.value.status == 400
    with pytest.raises(ValueError, match="resource"):
        client.get("invoices", "1")
    with CrmClient(base_url=crm_sim.url, token="wrong", policy=FAST) as bad_client:
        with pytest.raises(CrmAuthError) as auth:
            bad_client.get("customers", c["Id"])
    assert auth.value.status == 401 and isinstance(auth.value, CrmError)


# ---------------------------------------------------------------------- writes


def test_create_with_same_key_twice_makes_one_entity(client: CrmClient) -> None:
    a = client.create("customers", _org(1), idempotency_key="same")
    b = client.create("customers", _org(1), idempotency_key="same")
    assert a == b
    assert len(client.read_all("customers")) == 1


def test_patch_if_match(client: CrmClient) -> None:
    c = client.create("customers", _org(1), idempotency_key="k")
    patched = client.patch("customers", c["Id"], {"City": "Oslo", "Country": "no"}, if_match=1)
    assert (patched["Version"], patched["City"], patched["Country"]) == (2, "Oslo", "NO")
    with pytest.raises(CrmVersionMismatch) as exc:
        client.patch("customers", c["Id"], {"City": "Bergen"}, if_match=1)
    assert (exc.value.status, exc.value.code, exc.value.field) == (412, "version_mismatch", "Version")
    with pytest.raises(CrmVersionMismatch):
        client.delete("customers", c["Id"], if_match=1)
    client.delete("customers", c["Id"], if_match=2)
    assert client.get("customers", c["Id"]) is None


class _LoseFirstResponse(httpx.BaseTransport):
    """Forwards to the real server; the first response to `method` is replaced by a 502 (a lost response)."""

    def __init__(self, method: str, after_first: Callable[[], None] | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.method = method
        self.after_first = after_first
        self.lost = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == self.method and not self.lost:
            response.read()
            response.close()
            self.lost += 1
            if self.after_first:
                self.after_first()
            return httpx.Response(502, json={"error": "bad_gateway", "message": "lost", "field": None})
        return response

    def close(self) -> None:
        self.inner.close()


def test_retried_patch_whose_first_attempt_was_applied_succeeds(crm_sim: Any, client: CrmClient) -> None:
    c = client.create("customers", _org(1), idempotency_key="k")
    transport = _LoseFirstResponse("PATCH")
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, policy=FAST, transport=transport) as lossy:
        patched = lossy.patch("customers", c["Id"], {"City": "oslo ", "Country": "se"}, if_match=1)
        assert transport.lost == 1 and lossy.stats.retries == 1
    assert patched["Version"] == 2 and patched["Country"] == "SE"


def test_retried_patch_after_a_concurrent_change_is_a_mismatch(crm_sim: Any, client: CrmClient) -> None:
    c = client.create("customers", _org(1), idempotency_key="k")
    other = lambda: client.patch("customers", c["Id"], {"Phone": "123"}, if_match=None)  # noqa: E731
    transport = _LoseFirstResponse("PATCH", after_first=other)
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, policy=FAST, transport=transport) as lossy:
        with pytest.raises(CrmVersionMismatch):
            lossy.patch("customers", c["Id"], {"City": "Oslo"}, if_match=1)


def test_retried_delete_that_finds_nothing_is_done(crm_sim: Any, client: CrmClient) -> None:
    c = client.create("customers", _org(1), idempotency_key="k")
    transport = _LoseFirstResponse("DELETE")
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, policy=FAST, transport=transport) as lossy:
        assert lossy.delete("customers", c["Id"], if_match=1) is None
        assert transport.lost == 1
    assert client.get("customers", c["Id"]) is None


def test_retried_create_with_key_makes_one_entity(crm_sim: Any, client: CrmClient) -> None:
    transport = _LoseFirstResponse("POST")
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, policy=FAST, transport=transport) as lossy:
        made = lossy.create("products", {"Name": "Lamp", "UnitPrice": "10"}, idempotency_key="lamp")
        assert transport.lost == 1
    assert [p["Id"] for p in client.read_all("products")] == [made["Id"]]


def test_faulty_server_no_duplicates_and_retries_counted(crm_sim: Any, client: CrmClient) -> None:
    _faults(crm_sim, error_rate=0.5, lost_response_rate=0.5, seed=1234)
    ids = [client.create("customers", _org(i), idempotency_key=f"org-{i}")["Id"] for i in range(15)]
    for id_ in ids:
        assert client.patch("customers", id_, {"City": "Oslo", "Country": "NO"}, if_match=1)["Version"] == 2
    for id_ in ids[:5]:
        client.delete("customers", id_, if_match=2)
    pages = list(client.read_changes("customers", None, limit=4))
    assert client.stats.retries > 0 and client.stats.server_errors > 0
    _faults(crm_sim)
    everything = client.read_all("customers")
    assert len(ids) == len(set(ids)) == 15
    assert sorted(e["Id"] for e in everything) == sorted(ids[5:])
    assert all(e["Version"] == 2 and e["City"] == "Oslo" for e in everything)
    assert sum(len(p.items) for p in pages) >= 10


def test_rate_limit_from_the_server_is_seen_with_retry_after(crm_sim: Any) -> None:
    _faults(crm_sim, rate_limit_per_minute=2)
    policy = HttpPolicy(max_attempts=3, backoff_initial_s=0.001, max_retry_after_s=0.05)
    with CrmClient(base_url=crm_sim.url, token=crm_sim.token, policy=policy) as c:
        c.get("customers", "C1")
        c.get("customers", "C1")
        with pytest.raises(TransientError) as exc:
            c.get("customers", "C1")
        assert exc.value.status == 429 and exc.value.retry_after is not None and exc.value.retry_after >= 1
        assert c.stats.rate_limited == 3 and c.stats.retries == 2


# ---------------------------------------------------------------------- MockTransport: Retry-After, naming


def test_retry_after_is_honoured() -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"},
                                  json={"error": "rate_limited", "message": "slow down", "field": None})
        return httpx.Response(200, json={"Id": "C1", "Version": 1})

    policy = HttpPolicy(backoff_initial_s=0.001, backoff_max_s=0.001)
    with CrmClient(base_url="http://crm.test/api/v1", token="t", policy=policy,
                   transport=httpx.MockTransport(handler)) as c:
        assert c.get("customers", "C1") == {"Id": "C1", "Version": 1}
        assert c.stats.rate_limited == 1 and c.stats.retries == 1
    assert calls[1] - calls[0] >= 0.95


NAMING = {
    "paths": {"customers": "clients", "orders": "sales-orders"},
    "fields": {"Email": "email_address", "Id": "id", "Lines": "rows", "Quantity": "qty", "Version": "rev",
               "Deleted": "gone"},
    "auth_header": "X-Api-Key",
    "auth_scheme": "",
    "items_key": "data",
    "next_cursor_key": "cursor",
    "has_more_key": "more",
    "since_param": "after",
}


def _renamed_server(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        assert request.headers["X-Api-Key"] == "secret"
        assert "authorization" not in request.headers
        if request.method == "GET" and request.url.path == "/v2/clients":
            if "after" not in request.url.params:
                return httpx.Response(200, json={"data": [{"id": "1", "email_address": "a@b.no", "rev": 1}],
                                                 "cursor": "c1", "more": True})
            return httpx.Response(200, json={"data": [{"id": "2", "gone": True, "rev": 3}], "cursor": "c2",
                                             "more": False})
        if request.method == "POST" and request.url.path == "/v2/sales-orders":
            body = json.loads(request.content)
            assert body == {"OrderNumber": "SO-1", "rows": [{"ProductId": "P1", "qty": "2"}]}
            return httpx.Response(201, json={"id": "O1", **body, "rev": 1})
        if request.method == "PATCH":
            return httpx.Response(422, json={"error": "validation_failed", "message": "email_address: bad",
                                             "field": "email_address"})
        return httpx.Response(404, json={"error": "not_found", "message": "no", "field": None})

    return httpx.MockTransport(handler)


def test_naming_translates_paths_fields_auth_and_envelope() -> None:
    seen: list[httpx.Request] = []
    env = {"CRM_BASE_URL": "http://crm.test/v2", "CRM_API_TOKEN": "secret", "CRM_NAMING": json.dumps(NAMING)}
    with CrmClient.from_env(env, policy=FAST, transport=_renamed_server(seen)) as c:
        pages = list(c.read_changes("customers", None))
        assert [p.items for p in pages] == [[{"Id": "1", "Email": "a@b.no", "Version": 1}],
                                            [{"Id": "2", "Deleted": True, "Version": 3}]]
        assert pages[-1].next_cursor == "c2"
    assert seen[1].url.params["after"] == "c1"


def test_naming_read_all_and_write_translation() -> None:
    seen: list[httpx.Request] = []
    naming = CrmNaming.from_mapping(NAMING)
    with CrmClient(base_url="http://crm.test/v2", token="secret", naming=naming, policy=FAST,
                   transport=_renamed_server(seen)) as c:
        assert c.read_all("customers") == [{"Id": "1", "Email": "a@b.no", "Version": 1}]
        made = c.create("orders", {"OrderNumber": "SO-1", "Lines": [{"ProductId": "P1", "Quantity": "2"}]},
                        idempotency_key="k")
        assert made == {"Id": "O1", "OrderNumber": "SO-1", "Lines": [{"ProductId": "P1", "Quantity": "2"}], "Version": 1}
        with pytest.raises(CrmValidationError) as exc:
            c.patch("customers", "1", {"Email": "x"}, if_match=None)
        assert exc.value.field == "Email"
        assert c.get("products", "P1") is None
    assert seen[-1].url.path == "/v2/products/P1"


def test_naming_loads_json_and_toml_and_rejects_mistakes() -> None:
    toml = 'auth_header = "X-Token"\nauth_scheme = "Token"\n[paths]\nproducts = "items"\n[fields]\nName = "title"\n'
    n = CrmNaming.loads(toml)
    assert n.path("products") == "items" and n.path("customers") == "customers"
    assert n.auth_value("abc") == "Token abc"
    assert n.to_remote({"Name": "x", "Lines": [{"Name": "y"}]}) == {"title": "x", "Lines": [{"title": "y"}]}
    assert n.to_canonical({"title": "x"}) == {"Name": "x"}
    assert CrmNaming.loads('{"auth_scheme": ""}').auth_value("abc") == "abc"
    with pytest.raises(ValueError, match="unknown key 'feilds'"):
        CrmNaming.from_json('{"feilds": {}}')
    with pytest.raises(ValueError, match="unknown resource 'invoices'"):
        CrmNaming(paths={"invoices": "bills"})
    with pytest.raises(ValueError, match="more than one field"):
        CrmNaming(fields={"Name": "n", "Email": "n"})
    with pytest.raises(ValueError, match="not valid JSON"):
        CrmNaming.loads("{oops")


def test_from_env_and_repr_hide_the_token() -> None:
    with pytest.raises(ValueError, match="CRM_API_TOKEN"):
        CrmClient.from_env({"CRM_BASE_URL": "http://x"})
    c = CrmClient.from_env({"CRM_BASE_URL": "http://x/api/v1/", "CRM_API_TOKEN": "s3cr3t-token"})
    try:
        assert c.base_url == "http://x/api/v1"
        assert "s3cr3t" not in repr(c) and "s3cr3t" not in str(c)
    finally:
        c.close()


def test_a_policy_of_no_attempt_is_refused_by_name():
    with pytest.raises(ValueError, match="max_attempts is 0: at least 1"):
        HttpPolicy(max_attempts=0)
    assert HttpPolicy(max_attempts=1).max_attempts == 1
