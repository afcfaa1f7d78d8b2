"""A CRM that numbers orders itself (the `offset-numbered` style, as BottleCRM numbers invoices): a sync
killed after an order create reached the CRM and before it was recorded must not create it twice.
The next collect cannot know the order by its number (the CRM chose another one); it knows it by
the key the sync wrote into it (the profile's `writes.create_key`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.profile import load_profile
from crm_wave.systems.crm.simulator import create_app
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave_tests.conftest import CRM_TOKEN
from crm_wave_tests.crm.holding import HoldAnswer, kill_when_held
from crm_wave_tests.rig import Rig


def test_the_server_numbers_orders_and_keeps_the_create_key(tmp_path: Path):
    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token="t", style="offset-numbered")) as base:
        with CrmClient(base_url=f"{base}/api/v1", token="t", profile=load_profile("offset-numbered")) as crm:
            c = crm.create("customers", {"Type": "organization", "Name": "Acme"}, idempotency_key="k0")
            p = crm.create("products", {"Name": "Widget", "UnitPrice": "5.00"}, idempotency_key="k1")
            body = {"OrderNumber": "W-1", "CustomerId": c["Id"], "Lines": [{"ProductId": p["Id"], "Quantity": "2"}]}
            made = crm.create("orders", body, idempotency_key="crm-wave:G1")
            assert made["OrderNumber"] == "SO-00001" and made["_CreateKey"] == "crm-wave:G1"
            assert crm.create("orders", body, idempotency_key="crm-wave:G2")["OrderNumber"] == "SO-00002"
            crm.patch("orders", made["Id"], {"Memo": "thanks"}, if_match=None)  # the key survives an update
            (again,) = [o for o in crm.read_all("orders") if o["Id"] == made["Id"]]
            assert again["_CreateKey"] == "crm-wave:G1" and again["Memo"] == "thanks" and "ExternalRef" not in again
            raw = httpx.get(f"{base}/api/v1/orders/{made['Id']}", headers={"Authorization": "Bearer t"}).json()
            assert raw["ExternalRef"] == "crm-wave:G1" and raw["OrderNumber"] == "SO-00001"


@pytest.mark.timeout(600)
def test_an_order_create_killed_before_it_was_recorded_is_found_by_its_key(wave_sim, tmp_path: Path):
    db = tmp_path / "crm.sqlite3"
    n = 5
    # The third order create is done by the CRM, and its answer held back until the sync is killed.
    hold = HoldAnswer(create_app(db_path=db, token=CRM_TOKEN, style="offset-numbered"), "POST", "/orders", nth=3)
    with serve_in_thread(hold) as base, \
            CrmClient(base_url=f"{base}/api/v1", token=CRM_TOKEN, profile=load_profile("offset-numbered")) as crm, \
            WaveClient(url=wave_sim.url, token=wave_sim.token) as wave:
        rig = Rig(crm=crm, wave=wave, store=Store(tmp_path / "unused.duckdb"), crm_db=db)
        biz = wave.business_id
        org = rig.wave_write("customerCreate", {"businessId": biz, "name": "Numbered Org",
                                                "email": "org@numbered.example"}).entity
        prod = rig.wave_write("productCreate", {"businessId": biz, "name": "Service", "unitPrice": "10"}).entity
        for i in range(n):
            rig.wave_write("invoiceCreate", {"businessId": biz, "customerId": org["id"], "invoiceNumber": f"W-{i}",
                                             "invoiceDate": "2026-11-02", "status": "SAVED",
                                             "items": [{"productId": prod["id"], "quantity": str(i + 1)}]})
        data_dir = tmp_path / "data"
        env = {**os.environ, "CRM_BASE_URL": f"{base}/api/v1", "CRM_API_TOKEN": CRM_TOKEN,
               "CRM_PROFILE": "offset-numbered", "WAVE_GRAPHQL_URL": wave_sim.url, "WAVE_API_TOKEN": wave_sim.token,
               "WAVE_REQUESTS_PER_MINUTE": "0", "CRM_WAVE_DATA_DIR": str(data_dir)}
        proc = subprocess.Popen([sys.executable, "-m", "crm_wave.cli", "sync", "--once"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kill_when_held(proc, hold, "the third order create", 400)
        assert len(crm.read_all("orders")) == 3  # the third was created; the sync never heard of it

        rig.store = Store(data_dir / "crm_wave.duckdb")
        passes = rig.sync()
        assert passes[-1].writes == 0
        orders = crm.read_all("orders")
        assert len(orders) == n, sorted(o["OrderNumber"] for o in orders)
        assert all(o["OrderNumber"].startswith("SO-") for o in orders)
        links = rig.links("order")
        assert links.height == n and links["crm_id"].n_unique() == n and links["wave_id"].n_unique() == n
        assert (links["how"] == "created:crm (recovered)").sum() == 1
        invoices = wave.list_invoices()
        assert len(invoices) == n  # no Wave duplicate of the order either
        # The CRM's numbers reach Wave: both sides show the same number.
        assert sorted(i["invoiceNumber"] for i in invoices) == sorted(o["OrderNumber"] for o in orders)
