"""The sync against BottleCRM itself (django-crm 1.35 on PostgreSQL) through the `bottlecrm` profile.

BottleCRM keeps its data between runs, so every record here carries a run tag and assertions look
at tagged records only; Wave is a fresh simulator per test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from crm_wave.store import Store
from crm_wave.sync.deletes import pending_deletes
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.profile import load_profile
from crm_wave.systems.wave.client import WaveClient
from crm_wave_tests.realcrm.conftest import WAIT_S
from crm_wave_tests.rig import Rig

# The first test may wait for BottleCRM's first start (CI starts it in the background at once:
# install and migrate take 6-15 minutes), longer than the suite's 300 s per test.
pytestmark = pytest.mark.timeout(WAIT_S + 600)


@pytest.fixture
def real_rig(bottlecrm, wave_sim, tmp_path: Path) -> Iterator[Rig]:
    """The sync between BottleCRM and a fresh Wave simulator."""
    with CrmClient(base_url=bottlecrm.base_url, token=bottlecrm.token, profile=load_profile("bottlecrm")) as crm, \
            WaveClient(url=wave_sim.url, token=wave_sim.token) as wave:
        yield Rig(crm=crm, wave=wave, store=Store(tmp_path / "crm_wave.duckdb"), crm_db=tmp_path / "unused")


def _raw(bottlecrm, method: str, path: str, **kw) -> dict:
    r = httpx.request(method, f"{bottlecrm.base_url}/api/{path}", headers={"Authorization": f"Bearer {bottlecrm.token}"},
                      timeout=60, **kw)
    assert r.status_code < 300, r.text[:500]
    return r.json() if r.content else {}


def _tagged(items: list[dict], key: str, tag: str) -> dict[str, dict]:
    return {i[key]: i for i in items if tag in (i.get(key) or "")}


def test_accounts_contacts_products_invoices_both_ways_with_edits_and_a_held_delete(real_rig, bottlecrm):
    rig, tag = real_rig, uuid.uuid4().hex[:8]
    started = time.monotonic()
    # In BottleCRM: a company with a contact person, a product, and an invoice with two lines.
    acme = rig.crm_create("customers", {"Type": "organization", "Name": f"Acme {tag}", "Email": f"post-{tag}@acme.example",
                                        "City": "Oslo", "Country": "NO", "Currency": "USD"})
    assert acme["Id"].startswith("account:")
    account_id = acme["Id"].removeprefix("account:")
    kari = _raw(bottlecrm, "POST", "contacts/", json={"first_name": "Kari", "last_name": f"Nordmann{tag}",
                                                      "email": f"kari-{tag}@acme.example", "account": account_id})["id"]
    widget = rig.crm_create("products", {"Name": f"Widget {tag}", "UnitPrice": "19.99", "Description": "A widget"})
    gizmo = rig.crm_create("products", {"Name": f"Gizmo {tag}", "UnitPrice": "5"})
    invoice = _raw(bottlecrm, "POST", "invoices/", json={
        "invoice_title": f"Spring {tag}", "account_id": account_id, "contact_id": kari, "currency": "USD",
        "issue_date": "2026-11-01", "due_date": "2026-11-30", "po_number": "PO-7",
        "line_items": [{"product": widget["Id"], "description": "two widgets", "quantity": "2", "unit_price": "19.99"},
                       {"product": gizmo["Id"], "description": "a gizmo", "quantity": "1", "unit_price": "5"}]})["invoice"]
    # In Wave: a company and a product.
    biz = rig.wave.business_id
    rig.wave_write("customerCreate", {"businessId": biz, "name": f"Wave Org {tag}", "email": f"org-{tag}@wave.example",
                                      "address": {"city": "Bergen", "countryCode": "NO"}})
    service = rig.wave_write("productCreate", {"businessId": biz, "name": f"Service {tag}", "unitPrice": "99.5"}).entity
    rig.sync()

    customers = _tagged(rig.wave.list_customers(), "name", tag)
    assert {f"Acme {tag}", f"Kari Nordmann{tag}", f"Wave Org {tag}"} <= set(customers)
    assert customers[f"Acme {tag}"]["email"] == f"post-{tag}@acme.example"
    kari_w = customers[f"Kari Nordmann{tag}"]
    assert (kari_w["firstName"], kari_w["lastName"]) == ("Kari", f"Nordmann{tag}")
    products = _tagged(rig.wave.list_products(), "name", tag)
    assert Decimal(products[f"Widget {tag}"]["unitPrice"]) == Decimal("19.99")
    (wave_invoice,) = [i for i in rig.wave.list_invoices() if i["invoiceNumber"] == invoice["invoice_number"]]
    assert wave_invoice["customer"]["id"] == customers[f"Acme {tag}"]["id"]
    assert [i["product"]["id"] for i in wave_invoice["items"]] == [products[f"Widget {tag}"]["id"], products[f"Gizmo {tag}"]["id"]]
    assert Decimal(wave_invoice["total"]["value"]) == Decimal("44.98")
    crm_customers = _tagged(rig.crm.read_all("customers"), "Name", tag)
    wave_org = crm_customers[f"Wave Org {tag}"]
    assert wave_org["Id"].startswith("account:") and wave_org["City"] == "Bergen"
    crm_products = _tagged(rig.crm.read_all("products"), "Name", tag)
    assert Decimal(crm_products[f"Service {tag}"]["UnitPrice"]) == Decimal("99.5")

    # A Wave invoice for Acme reaches BottleCRM as an invoice with its lines (contact: Acme's contact).
    rig.wave_write("invoiceCreate", {"businessId": biz, "customerId": customers[f"Acme {tag}"]["id"],
                                     "invoiceNumber": f"W-{tag}", "invoiceDate": "2026-11-02", "dueDate": "2026-11-20",
                                     "items": [{"productId": service["id"], "quantity": "3", "unitPrice": "99.5"}]})
    # Edits both ways: a phone in BottleCRM, a price in Wave.
    rig.crm.patch("customers", acme["Id"], {"Phone": "+47 2222 3333"}, if_match=None)
    rig.wave_write("productPatch", {"id": products[f"Widget {tag}"]["id"], "unitPrice": "21.50"})
    rig.sync()

    assert _tagged(rig.wave.list_customers(), "name", tag)[f"Acme {tag}"]["phone"] == "+47 2222 3333"
    assert Decimal(rig.crm.get("products", widget["Id"])["UnitPrice"]) == Decimal("21.50")
    from_wave = [o for o in rig.crm.read_all("orders") if o["CustomerId"] == acme["Id"] and o["Id"] != invoice["id"]]
    assert len(from_wave) == 1, from_wave
    (order,) = from_wave
    assert order["OrderNumber"].startswith("INV-")  # BottleCRM numbers its invoices itself
    assert [(line["ProductId"], Decimal(line["Quantity"])) for line in order["Lines"]] == [(crm_products[f"Service {tag}"]["Id"], 3)]
    assert Decimal(order["Total"]) == Decimal("298.50")
    detail = _raw(bottlecrm, "GET", f"invoices/{order['Id']}/")["invoice"]
    assert detail["contact"]["id"] == kari

    # A delete in BottleCRM is held, not carried out in Wave.
    _raw(bottlecrm, "DELETE", f"invoices/products/{gizmo['Id']}/")
    passes = rig.sync()
    held = [d for d in pending_deletes(rig.store) if d.system == "wave" and d.entity == "product"]
    assert len(held) == 1 and held[0].target_id == products[f"Gizmo {tag}"]["id"]
    assert f"Gizmo {tag}" in _tagged(rig.wave.list_products(), "name", tag)
    assert not _tagged(rig.wave.list_products(), "name", tag)[f"Gizmo {tag}"].get("isArchived")
    # Nothing echoes: a further sync writes nothing.
    assert [p.writes for p in rig.sync()][-1] == 0
    print(f"BottleCRM round trip: {time.monotonic() - started:.1f} s, last passes {[p.writes for p in passes]}, "
          f"CRM requests {rig.crm.stats.requests}, full passes {rig.crm.connector.full_passes}")


def _tagged_accounts(bottlecrm, tag: str) -> int:
    data = _raw(bottlecrm, "GET", "accounts/", params={"search": tag, "limit": 1})
    return data["active_accounts"]["open_accounts_count"] + data["closed_accounts"]["close_accounts_count"]


def test_a_killed_push_to_bottlecrm_leaves_no_duplicates(real_rig, bottlecrm, wave_sim, tmp_path):
    rig, tag = real_rig, uuid.uuid4().hex[:8]
    n = 40
    for i in range(n):
        body = {"businessId": rig.wave.business_id, "name": f"Killed {tag} {i}"}
        if i % 2:
            body["email"] = f"killed-{tag}-{i}@x.example"  # half have no email: found again by name
        rig.wave_write("customerCreate", body)
    data_dir = tmp_path / "data"
    env = {**os.environ, "CRM_PROFILE": "bottlecrm", "CRM_BASE_URL": bottlecrm.base_url, "CRM_API_TOKEN": bottlecrm.token,
           "WAVE_GRAPHQL_URL": wave_sim.url, "WAVE_API_TOKEN": wave_sim.token, "WAVE_REQUESTS_PER_MINUTE": "0",
           "CRM_WAVE_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--once"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and _tagged_accounts(bottlecrm, tag) < 5:
        assert proc.poll() is None, "the sync finished before it could be killed"
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = _tagged_accounts(bottlecrm, tag)
    assert 0 < killed_at < n, killed_at

    rig.store = Store(data_dir / "crm_wave.duckdb")
    passes = rig.sync()
    assert passes[-1].writes == 0
    names = [c["Name"] for c in rig.crm.read_all("customers") if tag in (c.get("Name") or "")]
    assert len(names) == n and len(set(names)) == n
    assert _tagged_accounts(bottlecrm, tag) == n
    print(f"killed at {killed_at}/{n} accounts; after restart {len(names)} accounts, no duplicates")


_SYNC = ("import os; from pathlib import Path; from crm_wave.store import Store; from crm_wave.sync.engine import sync_once; "
         "from crm_wave.systems.crm.client import CrmClient; from crm_wave.systems.wave.client import WaveClient; "
         "crm = CrmClient.from_env(os.environ); wave = WaveClient(url=os.environ['WAVE_GRAPHQL_URL'], "
         "token=os.environ['WAVE_API_TOKEN']); sync_once(Store(Path(os.environ['CRM_WAVE_DATA_DIR']) / 'crm_wave.duckdb'), "
         "{'crm': crm, 'wave': wave})")


def test_a_killed_invoice_create_is_found_by_its_key_not_created_twice(real_rig, bottlecrm, wave_sim, tmp_path):
    """BottleCRM numbers invoices itself: a sync killed after an invoice create reached BottleCRM and before
    it was recorded finds the invoice again by the key kept in its custom field `crm_wave_key`."""
    from crm_wave_tests.crm.holding import HoldAnswer, kill_when_held, proxy
    from crm_wave.systems.serve import serve_in_thread

    rig, tag, n = real_rig, uuid.uuid4().hex[:8], 4
    data_dir = tmp_path / "data"
    rig.store = Store(data_dir / "crm_wave.duckdb")
    acme = rig.crm_create("customers", {"Type": "organization", "Name": f"Numbered {tag}", "Email": f"n-{tag}@acme.example"})
    account_id = acme["Id"].removeprefix("account:")
    _raw(bottlecrm, "POST", "contacts/", json={"first_name": "Nils", "last_name": f"Numbered{tag}",
                                               "email": f"nils-{tag}@acme.example", "account": account_id})
    biz = rig.wave.business_id
    service = rig.wave_write("productCreate", {"businessId": biz, "name": f"Hours {tag}", "unitPrice": "80"}).entity
    rig.sync()
    (customer,) = [c for c in rig.wave.list_customers() if c["name"] == f"Numbered {tag}"]
    for i in range(n):
        rig.wave_write("invoiceCreate", {"businessId": biz, "customerId": customer["id"], "invoiceNumber": f"K-{tag}-{i}",
                                         "invoiceDate": "2026-11-03", "items": [{"productId": service["id"], "quantity": str(i + 1)}]})

    def invoices() -> list[dict]:
        return _raw(bottlecrm, "GET", "invoices/", params={"account": account_id, "limit": 1000})["results"]

    # The second invoice create reaches BottleCRM, which makes the invoice; its answer is held until the kill.
    hold = HoldAnswer(proxy(bottlecrm.base_url), "POST", "/api/invoices", nth=2)
    with serve_in_thread(hold) as via:
        env = {**os.environ, "CRM_PROFILE": "bottlecrm", "CRM_BASE_URL": via, "CRM_API_TOKEN": bottlecrm.token,
               "WAVE_GRAPHQL_URL": wave_sim.url, "WAVE_API_TOKEN": wave_sim.token, "WAVE_REQUESTS_PER_MINUTE": "0",
               "CRM_WAVE_DATA_DIR": str(data_dir)}
        # The sync itself, as `crm-wave sync --once` runs it, without the CLI's 15 s preflight read (a
        # full read of BottleCRM's accounts, which a busy machine does not answer in 15 s).
        proc = subprocess.Popen([sys.executable, "-c", _SYNC], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when_held(proc, hold, "the second invoice create", 600)
    assert len(invoices()) == 2  # the second one exists; the sync never heard of it

    rig.store = Store(data_dir / "crm_wave.duckdb")
    passes = rig.sync()
    assert passes[-1].writes == 0
    made = invoices()
    assert len(made) == n, sorted(i["invoice_number"] for i in made)
    links = rig.links("order")
    ours = links.filter(links["crm_id"].is_in([i["id"] for i in made]))
    assert ours.height == n and ours["wave_id"].n_unique() == n
    assert (ours["how"] == "created:crm (recovered)").sum() == 1
    numbers = sorted(i["invoice_number"] for i in made)
    # One Wave invoice each, numbered as BottleCRM numbered it (the recovered one too).
    assert sorted(i["invoiceNumber"] for i in rig.wave.list_invoices() if i["customer"]["id"] == customer["id"]) == numbers
    print(f"killed after invoice create 2/{n}; after restart {len(made)} invoices, 1 recovered by its key")
