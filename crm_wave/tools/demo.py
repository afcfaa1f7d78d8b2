"""`make demo`: both simulators with overlapping data, a first sync that asks before overwriting, the
approval, edits on both sides, another sync.

Everything runs locally: the CRM and Wave simulators on loopback ports (SQLite files in
`<data dir>/sim/`), the sync's DuckDB file in the data directory (`--data-dir`, else
`CRM_WAVE_DATA_DIR`, else `data/`), the Dagster job in-process.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path

from crm_wave.mapping.policy import describe_policy, load_policy
from crm_wave.tools.report import format_summary, state_summary
from crm_wave.config.settings import DB_FILE, AppSettings, data_root
from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.simulator import create_app as crm_app
from crm_wave.systems.crm.simulator import seed as seed_crm
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import Mutation, WaveClient
from crm_wave.systems.wave.simulator import create_app as wave_app
from datetime import UTC

CRM_TOKEN = "crm-demo-token"
WAVE_TOKEN = "wave-demo-token"


def seed_wave_overlap(crm: CrmClient, wave: WaveClient) -> dict[str, int]:
    """Put some of the CRM's customers and products in Wave already (and some of Wave's own); the
    products' names lower-cased and the customers' currency left at Wave's default, so the first
    sync finds differences to ask about."""
    customers = [c for c in crm.read_all("customers") if c.get("Email")][:5]
    products = crm.read_all("products")[:3]
    biz = wave.business_id
    ops = [Mutation("customerCreate", {"businessId": biz, "name": c["Name"], "email": c["Email"].upper(),
                                       "phone": "+47 22 00 00 00"}, f"c{i}") for i, c in enumerate(customers)]
    ops += [Mutation("customerCreate", {"businessId": biz, "name": n, "email": e}, n) for n, e in (
        ("Fjord Consulting AS", "post@fjordconsulting.no"), ("Nordlys Bakeri", "hei@nordlysbakeri.no"))]
    ops += [Mutation("customerCreate", {"businessId": biz, "name": "Ola Wave", "firstName": "Ola", "lastName": "Wave",
                                        "email": "ola.wave@example.no"}, "person")]
    ops += [Mutation("productCreate", {"businessId": biz, "name": p["Name"].lower(), "unitPrice": p["UnitPrice"]}, f"p{i}")
            for i, p in enumerate(products)]
    ops += [Mutation("productCreate", {"businessId": biz, "name": "Consulting hour", "unitPrice": "1250"}, "hour")]
    results = wave.mutate(ops)
    return {"wave_records": sum(r.ok for r in results)}


def make_edits(crm: CrmClient, wave: WaveClient) -> list[str]:
    """Edit both sides between the two syncs; return what was done, for the printout."""
    done = []
    customer = next(c for c in crm.read_all("customers") if c["Type"] == "organization")
    crm.patch("customers", customer["Id"], {"Phone": "+47 99 99 99 99"}, if_match=customer["Version"])
    done.append(f"CRM: customer {customer['Name']!r} Phone -> +47 99 99 99 99")
    wave_customers = {c["email"].lower(): c for c in wave.list_customers() if c.get("email")}
    other = next(c for c in crm.read_all("customers") if c.get("Email") and c["Id"] != customer["Id"]
                 and c["Email"].lower() in wave_customers)
    wc = wave_customers[other["Email"].lower()]
    wave.mutate([Mutation("customerPatch", {"id": wc["id"], "website": "https://edited-in-wave.example"}, "w")])
    done.append(f"Wave: customer {wc['name']!r} website -> https://edited-in-wave.example")
    # The same field on both sides: the newer edit (Wave's, made second) wins and the conflict is recorded.
    both = crm.get("customers", other["Id"])
    assert both is not None, other["Id"]
    city = "Stavanger" if both.get("City") == "Bergen" else "Bergen"  # a real edit, whatever the seed held
    crm.patch("customers", other["Id"], {"City": city}, if_match=both["Version"])
    wave.mutate([Mutation("customerPatch", {"id": wc["id"], "address": {**_address(wc), "city": "Trondheim"},
                                            "shippingDetails": {"address": {**_address(wc), "city": "Trondheim"}}}, "w2")])
    done.append(f"Both: customer {wc['name']!r} City -> {city!r} in the CRM, then 'Trondheim' in Wave")
    invoice = next(i for i in wave.list_invoices() if i["status"] != "DRAFT")
    accounts = wave.execute("query($id: ID!) { business(id: $id) { accounts(page: 1, pageSize: 50) { edges { node { id subtype { value } } } } } }",
                            {"id": wave.business_id})
    cash = next(e["node"]["id"] for e in accounts["business"]["accounts"]["edges"]
                if e["node"]["subtype"]["value"] in ("CASH_AND_BANK", "MONEY_IN_TRANSIT"))
    half = f"{float(invoice['total']['value']) / 2:.2f}"
    wave.mutate([Mutation("invoicePaymentCreateManual", {
        "invoiceId": invoice["id"], "amount": half, "exchangeRate": "1", "paymentAccountId": cash,
        "paymentDate": invoice["invoiceDate"], "paymentMethod": "BANK_TRANSFER"}, "pay")])
    done.append(f"Wave: payment of {half} on invoice {invoice['invoiceNumber']}")
    return done


def _address(node: dict) -> dict:
    a = node.get("address") or {}
    return {"addressLine1": a.get("addressLine1"), "addressLine2": a.get("addressLine2"), "city": a.get("city"),
            "postalCode": a.get("postalCode"), "countryCode": (a.get("country") or {}).get("code"),
            "provinceCode": (a.get("province") or {}).get("code")}


def _writes(passes: list[dict[str, dict]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for meta in passes:
        for key, m in meta.items():
            if key.startswith("push_"):
                for k in ("created", "updated", "failed"):
                    if m.get(k):
                        out[f"{key.removeprefix('push_')} {k}"] = out.get(f"{key.removeprefix('push_')} {k}", 0) + m[k]
    return out


def show_and_approve_waiting(store: Store) -> int:
    """Print what the first sync left waiting for a person, then approve it as the command would; return how many."""
    from datetime import datetime

    from crm_wave.store.queue import decide, list_items
    from crm_wave.sync.conflicts_cli import item_line

    with store.connect() as con:
        items = list_items(con)
    if not items:
        return 0
    print(f"\n{len(items)} field(s) differed between linked records and were NOT overwritten; they wait for review:")
    for item in items:
        print("  " + item_line(item))
    print("list them with `crm-wave conflicts`; approve with `crm-wave conflicts resolve ID... --take crm|wave`")
    print("\n== Approving: crm-wave conflicts resolve --all --take crm --by demo ==")
    with store.connect() as con:
        done = decide(store, con, items, "crm", None, "demo", datetime.now(UTC).replace(tzinfo=None))
    print(f"{len(done)} conflict(s) decided for the CRM's values; the next sync writes them")
    return len(done)


def data_dir_option(flag: str | None, environ: Mapping[str, str]) -> Path:
    """The data directory of `crm-wave demo` and `crm-wave dev`: `--data-dir` when given, else
    `CRM_WAVE_DATA_DIR` as every other command reads it, else `data`."""
    return Path(flag) if flag else data_root(environ)


def run_demo(data_dir: Path = Path("data")) -> int:
    """The whole demo; returns an exit code."""
    from crm_wave.defs.run import run_sync_job

    caller_root = data_root()  # what the caller's commands read, before the demo points the variable at its own
    sim_dir = data_dir / "sim"
    shutil.rmtree(sim_dir, ignore_errors=True)
    sim_dir.mkdir(parents=True)
    for stale in data_dir.glob(DB_FILE + "*"):
        stale.unlink()
    counts = seed_crm(sim_dir / "crm.sqlite3", seed=42, customers=20, products=10, orders=15)
    with ExitStack() as stack:
        crm_base = stack.enter_context(serve_in_thread(crm_app(db_path=sim_dir / "crm.sqlite3", token=CRM_TOKEN)))
        wave_base = stack.enter_context(serve_in_thread(wave_app(db_path=sim_dir / "wave.sqlite3", token=WAVE_TOKEN)))
        os.environ.update({
            "CRM_BASE_URL": f"{crm_base}/api/v1", "CRM_API_TOKEN": CRM_TOKEN,
            "WAVE_GRAPHQL_URL": f"{wave_base}/graphql/public", "WAVE_API_TOKEN": WAVE_TOKEN, "WAVE_REQUESTS_PER_MINUTE": "0",
            "CRM_WAVE_DATA_DIR": str(data_dir),
        })
        crm = stack.enter_context(CrmClient(base_url=f"{crm_base}/api/v1", token=CRM_TOKEN))
        wave = stack.enter_context(WaveClient(url=f"{wave_base}/graphql/public", token=WAVE_TOKEN))
        print(f"CRM simulator  {crm_base}/api/v1  seeded {counts}")
        print(f"Wave simulator {wave_base}/graphql/public  seeded {seed_wave_overlap(crm, wave)}")
        store = Store(data_dir / DB_FILE)

        print("\n== First sync (two-way, pre-existing pairs merged) ==")
        print("\n".join(describe_policy(load_policy(data_dir, AppSettings.load().policy))))
        passes = run_sync_job()
        print(f"{len(passes)} pass(es)")
        print(format_summary(state_summary(store), _writes(passes)))
        if show_and_approve_waiting(store):
            print("\n== Sync after the approval ==")
            passes = run_sync_job()
            print(f"{len(passes)} pass(es)")
            print(format_summary(state_summary(store), _writes(passes)))

        print("\n== Edits on both sides ==")
        for line in make_edits(crm, wave):
            print(" -", line)

        print("\n== Sync after the edits ==")
        passes = run_sync_job()
        print(f"{len(passes)} pass(es)")
        print(format_summary(state_summary(store), _writes(passes)))

    print(next_steps(data_dir, caller_root))
    return 0


def next_steps(data_dir: Path, caller_root: Path = Path("data")) -> str:
    """What to run after the demo: the project's own commands, on the demo's data directory (named with
    `CRM_WAVE_DATA_DIR=` unless it is `caller_root`, the directory the caller's commands read anyway)."""
    env = "" if Path(data_dir) == Path(caller_root) else f"CRM_WAVE_DATA_DIR={shlex.quote(str(data_dir))} "
    run = f"{env}.venv/bin/crm-wave"
    return f"""
Where to look next (the same commands run as `uv run crm-wave ...`; the simulators stopped with the
demo, so only the commands that read the data directory {data_dir}/ work now):
  {run} sql "SELECT entity, global_id, field, crm_value, wave_value, winner FROM field_conflicts"
  {run} sql "SHOW TABLES"          views: golden_customers, golden_orders, record_links, planned_writes, ...
  {run} deadletters                records a system refused (none in the demo)
  {run} confirm                    the circuit breakers of the six share tables
With the systems running (`make dev`, then its printed variables, see README):
  {run} plan                       what the next sync would write, field by field; writes nothing
  {run} deletes                    deletes waiting for approval
  Dagster UI: make dev, then http://127.0.0.1:3000 (lineage collect -> global -> share -> push)
"""
