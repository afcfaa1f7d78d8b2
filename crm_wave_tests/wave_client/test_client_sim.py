"""WaveClient against the real Wave simulator (the `wave_sim` fixture)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from crm_wave.systems.http import HttpPolicy, OutcomeUnknown, TransientError
from crm_wave.systems.wave.client import Mutation, WaveAuthError, WaveClient
from crm_wave_tests import wave_reads

FAST = HttpPolicy(backoff_initial_s=0.005, backoff_max_s=0.05, max_attempts=10, timeout_s=10)


@pytest.fixture
def wave(wave_sim: Any) -> Iterator[WaveClient]:
    with WaveClient(url=wave_sim.url, token=wave_sim.token, policy=FAST, batch_size=25) as client:
        yield client


def set_faults(sim: Any, **settings: Any) -> None:
    r = httpx.put(f"{sim.base}/_sim/faults", json=settings, timeout=5)
    r.raise_for_status()


def create_customers(wave: WaveClient, n: int, prefix: str = "Cust") -> list[dict[str, Any]]:
    ops = [Mutation("customerCreate", {
        "businessId": wave.business_id,
        "name": f"{prefix} {i}",
        "email": f"{prefix.lower()}{i}@example.com",
        "currency": "USD",
        "address": {"addressLine1": f"{i} Main St", "city": "Springfield", "postalCode": "12345",
                    "countryCode": "US", "provinceCode": "US-IL"},
    }, f"{prefix}-{i}") for i in range(n)]
    results = wave.mutate(ops)
    assert all(r.ok for r in results), [r.errors for r in results if not r.ok][:3]
    return [r.entity for r in results]  # type: ignore[misc]


def create_products(wave: WaveClient, names: list[str], price: str = "10.50") -> list[dict[str, Any]]:
    ops = [Mutation("productCreate", {"businessId": wave.business_id, "name": name, "unitPrice": price,
                                      "description": f"about {name}"}, name) for name in names]
    results = wave.mutate(ops)
    assert all(r.ok for r in results), [r.errors for r in results if not r.ok][:3]
    return [r.entity for r in results]  # type: ignore[misc]


def test_business_is_resolved_and_bad_token_is_refused(wave: WaveClient, wave_sim: Any) -> None:
    assert wave.business_id
    with WaveClient(url=wave_sim.url, token="wrong", policy=FAST) as bad:
        with pytest.raises(WaveAuthError):
            _ = bad.business_id
        with pytest.raises(WaveAuthError):
            bad.mutate([Mutation("customerCreate", {"businessId": wave.business_id, "name": "x"}, "k")])
    assert wave.list_customers() == []


def test_batch_of_60_each_created_and_read_back(wave: WaveClient) -> None:
    assert wave.business_id  # resolved once, before counting
    before = wave.stats.requests
    customers = create_customers(wave, 60)
    assert wave.stats.requests - before == 3  # 25 + 25 + 10
    products = create_products(wave, [f"Prod {i}" for i in range(60)])
    invoice_ops = [Mutation("invoiceCreate", {
        "businessId": wave.business_id,
        "customerId": customers[i]["id"],
        "invoiceNumber": f"INV-{i:03d}",
        "title": f"Order {i}",
        "invoiceDate": "2024-03-01",
        "dueDate": "2024-03-31",
        "currency": "USD",
        "poNumber": f"PO{i}",
        "memo": "thanks",
        "status": "DRAFT",
        "items": [{"productId": products[i]["id"], "quantity": "2", "unitPrice": "10.50", "description": "line"}],
    }, f"inv-{i}") for i in range(60)]
    results = wave.mutate(invoice_ops)
    assert all(r.ok for r in results), [r.errors for r in results if not r.ok][:3]

    listed = wave.list_customers()
    assert len(listed) == 60
    by_email = {c["email"]: c for c in listed}
    c7 = by_email["cust7@example.com"]
    assert c7["name"] == "Cust 7" and c7["id"] == customers[7]["id"]
    assert c7["address"]["addressLine1"] == "7 Main St" and c7["address"]["country"]["code"] == "US"
    assert c7["currency"]["code"] == "USD"
    assert {c["modifiedAt"] for c in listed} and listed == sorted(listed, key=lambda c: c["modifiedAt"])

    listed_products = wave.list_products()
    assert sorted(p["name"] for p in listed_products) == sorted(f"Prod {i}" for i in range(60))
    assert Decimal(listed_products[0]["unitPrice"]) == Decimal("10.50")

    invoices = {i["invoiceNumber"]: i for i in wave.list_invoices()}
    assert len(invoices) == 60
    inv = invoices["INV-005"]
    assert inv["customer"]["id"] == customers[5]["id"]
    assert inv["items"][0]["product"]["id"] == products[5]["id"]
    assert Decimal(inv["total"]["value"]) == Decimal("21.00")
    assert inv["status"] == "DRAFT" and inv["title"] == "Order 5" and inv["poNumber"] == "PO5"

    # Small pages give the same records.
    wave.page_size = 7
    assert sorted(c["id"] for c in wave.list_customers()) == sorted(c["id"] for c in customers)
    assert sum(len(p) for p in wave.iter_invoices()) == 60


def test_incremental_read_returns_only_later_changes(wave: WaveClient) -> None:
    customers = create_customers(wave, 5)
    cursor = max(c["modifiedAt"] for c in wave.list_customers())
    time.sleep(0.01)
    patched = wave.mutate([Mutation("customerPatch", {"id": customers[1]["id"], "phone": "555-0101"}, "p1"),
                           Mutation("customerPatch", {"id": customers[3]["id"], "name": "Renamed"}, "p3")])
    assert all(r.ok for r in patched)
    new = create_customers(wave, 1, prefix="Late")
    changed = wave.list_customers(modified_after=cursor)
    assert sorted(c["id"] for c in changed) == sorted([customers[1]["id"], customers[3]["id"], new[0]["id"]])
    assert all(c["modifiedAt"] > cursor for c in changed)
    assert changed == sorted(changed, key=lambda c: c["modifiedAt"])
    latest = max(c["modifiedAt"] for c in changed)
    assert wave.list_customers(modified_after=latest) == []


def test_archived_products_are_listed(wave: WaveClient) -> None:
    products = create_products(wave, ["Keep", "Old", "Other"])
    [res] = wave.mutate([Mutation("productArchive", {"id": products[1]["id"]}, "arch")])
    assert res.ok
    listed = {p["name"]: p for p in wave.list_products()}
    assert set(listed) == {"Keep", "Old", "Other"}
    assert listed["Old"]["isArchived"] is True and listed["Keep"]["isArchived"] is False
    # Without the explicit null Wave hides archived products: the client must not rely on the default.
    data = wave.execute("query($b: ID!) { business(id: $b) { products { edges { node { name } } } } }",
                        {"b": wave.business_id})
    assert sorted(e["node"]["name"] for e in data["business"]["products"]["edges"]) == ["Keep", "Other"]
    assert [p["id"] for p in wave_reads.find_products_by_name(wave, "old")] == [products[1]["id"]]


def test_find_lookups_are_exact(wave: WaveClient) -> None:
    bid = wave.business_id
    made = wave.mutate([
        Mutation("customerCreate", {"businessId": bid, "name": "Ann", "email": "ann@x.com"}, "a"),
        Mutation("customerCreate", {"businessId": bid, "name": "Ann AU", "email": "ann@x.com.au"}, "b"),
        Mutation("customerCreate", {"businessId": bid, "name": "Bob", "email": "bob@x.com"}, "c"),
    ])
    assert all(r.ok for r in made)
    ann = made[0].entity["id"]  # type: ignore[index]
    assert [c["id"] for c in wave_reads.find_customers_by_email(wave, "ann@x.com")] == [ann]
    assert [c["id"] for c in wave_reads.find_customers_by_email(wave, "  ANN@X.com ")] == [ann]
    assert wave_reads.find_customers_by_email(wave, "nobody@x.com") == []

    products = create_products(wave, ["Widget", "Widget Deluxe", "Gadget"])
    assert [p["id"] for p in wave_reads.find_products_by_name(wave, " widget ")] == [products[0]["id"]]
    assert wave_reads.find_products_by_name(wave, "Widg") == []

    inv_ops = [Mutation("invoiceCreate", {
        "businessId": bid, "customerId": ann, "invoiceNumber": number,
        "items": [{"productId": products[0]["id"], "quantity": "1", "unitPrice": "5"}],
    }, number) for number in ("12", "112", "120")]
    invoices = wave.mutate(inv_ops)
    assert all(r.ok for r in invoices), [r.errors for r in invoices]
    found = wave_reads.find_invoices_by_number(wave, "12")
    assert [i["id"] for i in found] == [invoices[0].entity["id"]]  # type: ignore[index]
    assert wave_reads.find_invoices_by_number(wave, "1") == []

    assert wave_reads.get_customer(wave, ann)["email"] == "ann@x.com"  # type: ignore[index]
    assert wave_reads.get_product(wave, products[2]["id"])["name"] == "Gadget"  # type: ignore[index]
    assert wave.get_invoice(invoices[1].entity["id"])["invoiceNumber"] == "112"  # type: ignore[index]


def test_deleted_records_are_gone(wave: WaveClient) -> None:
    [cust] = create_customers(wave, 1)
    [res] = wave.mutate([Mutation("customerDelete", {"id": cust["id"]}, "del")])
    assert res.ok and res.entity is None
    assert wave_reads.get_customer(wave, cust["id"]) is None
    assert wave.list_customers() == []


def test_input_errors_come_back_per_op_without_failing_the_batch(wave: WaveClient) -> None:
    bid = wave.business_id
    [cust] = create_customers(wave, 1)
    results = wave.mutate([
        Mutation("productCreate", {"businessId": bid, "name": "Good", "unitPrice": "1.00"}, "good"),
        Mutation("productCreate", {"businessId": bid, "name": "", "unitPrice": "1.00"}, "empty-name"),
        Mutation("productCreate", {"businessId": bid, "name": "Negative", "unitPrice": "-5"}, "negative"),
        Mutation("customerPatch", {"id": cust["id"], "name": "Patched"}, "patch"),
        Mutation("customerPatch", {"id": cust["id"], "currency": "NOTACURRENCY"}, "bad-enum"),
    ])
    by_key = {r.key: r for r in results}
    assert [r.key for r in results] == ["good", "empty-name", "negative", "patch", "bad-enum"]
    assert by_key["good"].ok and by_key["good"].entity["name"] == "Good"  # type: ignore[index]
    assert not by_key["empty-name"].ok and by_key["empty-name"].errors
    assert by_key["empty-name"].errors[0].path[-1] == "name"
    assert not by_key["negative"].ok and by_key["negative"].errors
    assert by_key["patch"].ok and by_key["patch"].entity["name"] == "Patched"  # type: ignore[index]
    assert not by_key["bad-enum"].ok
    assert by_key["bad-enum"].errors[0].code == "BAD_USER_INPUT"
    assert sorted(p["name"] for p in wave.list_products()) == ["Good"]


def test_invoice_lifecycle_mutations(wave: WaveClient) -> None:
    bid = wave.business_id
    [cust] = create_customers(wave, 1)
    [prod] = create_products(wave, ["Thing"], price="3.25")
    [created] = wave.mutate([Mutation("invoiceCreate", {
        "businessId": bid, "customerId": cust["id"], "status": "DRAFT",
        "items": [{"productId": prod["id"], "quantity": "4", "unitPrice": "3.25"}]}, "inv")])
    assert created.ok, created.errors
    inv_id = created.entity["id"]  # type: ignore[index]
    results = wave.mutate([
        Mutation("invoicePatch", {"id": inv_id, "memo": "patched",
                                  "items": [{"productId": prod["id"], "quantity": "2", "unitPrice": "3.25"}]}, "patch"),
        Mutation("invoiceApprove", {"invoiceId": inv_id}, "approve"),
        Mutation("invoiceMarkSent", {"invoiceId": inv_id, "sendMethod": "MARKED_SENT"}, "sent"),
    ])
    assert all(r.ok for r in results), [r.errors for r in results]
    got = wave.get_invoice(inv_id)
    assert got is not None and got["memo"] == "patched" and got["status"] != "DRAFT"
    assert Decimal(got["total"]["value"]) == Decimal("6.50")
    [deleted] = wave.mutate([Mutation("invoiceDelete", {"invoiceId": inv_id}, "del")])
    assert deleted.ok and wave.get_invoice(inv_id) is None


def test_reads_complete_under_injected_errors(wave: WaveClient, wave_sim: Any) -> None:
    created = create_customers(wave, 30)
    set_faults(wave_sim, error_rate=0.3, seed=1)
    wave.page_size = 4
    retries_before = wave.stats.retries
    listed = wave.list_customers()
    assert sorted(c["id"] for c in listed) == sorted(c["id"] for c in created)
    # Idempotent writes are retried through the 503s too.
    patched = wave.mutate([Mutation("customerPatch", {"id": c["id"], "phone": "1"}, c["id"]) for c in created[:10]])
    assert all(r.ok for r in patched)
    assert wave.stats.retries > retries_before
    assert wave.stats.server_errors > 0


def test_lost_create_response_raises_outcome_unknown_and_the_write_is_findable(wave: WaveClient, wave_sim: Any) -> None:
    bid = wave.business_id
    set_faults(wave_sim, lost_response_rate=1.0, seed=1)
    requests_before = wave.stats.requests
    with pytest.raises(OutcomeUnknown) as info:
        wave.mutate([Mutation("customerCreate", {"businessId": bid, "name": "Lost", "email": "lost@x.com"}, "lost")])
    assert info.value.keys == ["lost"]
    assert wave.stats.requests - requests_before == 1  # not retried
    set_faults(wave_sim)
    assert [c["name"] for c in wave_reads.find_customers_by_email(wave, "lost@x.com")] == ["Lost"]


def test_client_rate_limit_keeps_under_server_limit(wave_sim: Any) -> None:
    # Resolve the business first, then let the server allow 5 requests a minute.
    with WaveClient(url=wave_sim.url, token=wave_sim.token, policy=FAST) as probe:
        bid = probe.business_id
    set_faults(wave_sim, rate_limit_per_minute=5)
    polite_policy = HttpPolicy(requests_per_minute=5, max_attempts=1)
    with WaveClient(url=wave_sim.url, token=wave_sim.token, business_id=bid, policy=polite_policy) as polite:
        for _ in range(5):
            polite.list_customers()
        assert polite.stats.rate_limited == 0 and polite.stats.requests == 5
    # The server's window is now full: an unthrottled client gets a 429 with Retry-After.
    with WaveClient(url=wave_sim.url, token=wave_sim.token, business_id=bid,
                    policy=HttpPolicy(max_attempts=1)) as rude:
        with pytest.raises(TransientError) as info:
            rude.list_customers()
        assert info.value.status == 429 and (info.value.retry_after or 0) > 0
        assert rude.stats.rate_limited == 1


def test_concurrent_batches_throughput(wave: WaveClient) -> None:
    wave.max_workers = 4
    n = 400
    start = time.monotonic()
    created = create_customers(wave, n, prefix="Bulk")
    elapsed = time.monotonic() - start
    assert len({c["id"] for c in created}) == n
    assert len(wave.list_customers()) == n
    print(f"{n / elapsed:.0f} mutations/s with 4 workers, batch 25")
