"""CRM profiles: loading, validation errors that name the key, and the client's narrow behaviour per profile."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import httpx
import pytest

from crm_wave.config.settings import ConfigError
from crm_wave.systems.crm.client import CrmAuthError, CrmClient, CrmValidationError
from crm_wave.systems.crm.profile import ProfileError, load_profile, parse_profile, profile_from_env, shipped_profiles
from crm_wave.systems.http import HttpPolicy, OutcomeUnknown, TransientError

_MINIMAL = """
name = "t"
[customers]
path = "c"
[products]
path = "p"
[orders]
path = "o"
"""


def _parse(extra: str = "", base: str = _MINIMAL) -> None:
    parse_profile(tomllib.loads(base + extra))


def test_shipped_profiles_load_and_contract_is_the_default():
    assert {"contract", "offset", "paged", "bottlecrm"} <= set(shipped_profiles())
    for name in shipped_profiles():
        assert load_profile(name).name == name
    default = profile_from_env({})
    assert default.name == "contract" and default.contract_shaped
    assert not load_profile("offset").contract_shaped


@pytest.mark.parametrize(("text", "named"), [
    (_MINIMAL.replace('path = "c"', 'path = "c"\nbogus = 1'), "unknown key 'customers[0].bogus'"),
    (_MINIMAL.replace('path = "c"', 'path = "c"\npaging = { style = "spiral" }'), "customers[0].paging.style"),
    (_MINIMAL.replace('path = "c"', 'path = "c"\nfields = { Name = { remote = "n", colour = 1 } }'),
     "unknown key 'customers[0].fields.Name.colour'"),
    (_MINIMAL.replace('[orders]\npath = "o"', ""), "orders: required key is missing"),
    (_MINIMAL.replace('path = "c"', 'path = "c"\npaging = { style = "offset" }'), "customers[0]: changes.mode"),
    (_MINIMAL + '\n[auth]\nkind = "kerberos"', "auth.kind"),
    ('name = "t"\n[[customers]]\npath = "a"\n[[customers]]\npath = "b"\n[products]\npath = "p"\n[orders]\npath = "o"',
     "customers[0]: a resource split over several sources needs `when` and `id_prefix`"),
])
def test_a_bad_profile_fails_naming_the_key(text, named):
    with pytest.raises(ProfileError) as err:
        parse_profile(tomllib.loads(text))
    assert named in str(err.value)


def test_unknown_profile_name_or_missing_file_or_missing_variable(tmp_path: Path):
    with pytest.raises(ProfileError, match="'nosuch' is neither a shipped profile"):
        load_profile("nosuch")
    with pytest.raises(ProfileError, match="is not a file"):
        load_profile(str(tmp_path / "none.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(ProfileError, match="not valid TOML"):
        load_profile(str(bad))
    with pytest.raises(ConfigError, match=r"missing environment variable\(s\): CRM_API_TOKEN;"):
        CrmClient.from_env({"CRM_BASE_URL": "http://x", "CRM_PROFILE": "offset"})
    custom = tmp_path / "mine.toml"
    custom.write_text(_MINIMAL.replace('name = "t"', 'name = "mine"\ntoken_env = "MY_CRM_KEY"'))
    with pytest.raises(ConfigError, match=r"missing environment variable\(s\): MY_CRM_KEY;"):  # the profile's name
        CrmClient.from_env({"CRM_BASE_URL": "http://x", "CRM_API_TOKEN": "t", "CRM_PROFILE": str(custom)})


def _client(handler, profile: str = "bottlecrm", **kw) -> CrmClient:
    return CrmClient(base_url="http://crm.test", token="secret", profile=load_profile(profile),
                     transport=httpx.MockTransport(handler), policy=HttpPolicy(max_attempts=2, backoff_initial_s=0), **kw)


def test_drf_error_bodies_become_a_field_and_message():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": True, "errors": {"email": ["Enter a valid email address."]}})

    with _client(handler) as crm, pytest.raises(CrmValidationError) as err:
        crm.create("customers", {"Type": "organization", "Name": "X", "Email": "bad"}, idempotency_key="k")
    assert err.value.field == "Email" and err.value.message == "Enter a valid email address."

    def lines(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"line_items": [{}, {"quantity": ["A valid number is required."]}]})

    with _client(lines) as crm, pytest.raises(CrmValidationError) as err:
        crm.patch("orders", "0b8e3c0e-1111-4111-8111-111111111111", {"Lines": []}, if_match=None)
    assert err.value.field == "Lines[1].Quantity" and "valid number" in err.value.message


def test_403_means_check_the_token_and_html_500_is_a_server_error_not_a_crash():
    def forbidden(request: httpx.Request) -> httpx.Response:
        return httpx.Response(403, json={"detail": "Organization context is required. Please login again."})

    with _client(forbidden) as crm, pytest.raises(CrmAuthError) as err:
        crm.read_all("products")
    assert "check the CRM token: CRM_API_TOKEN" in str(err.value) and "secret" not in str(err.value)

    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text="<h1>Server Error (500)</h1>", headers={"content-type": "text/html"})

    with _client(html) as crm:
        with pytest.raises(OutcomeUnknown):  # a create without an idempotency key is sent once
            crm.create("products", {"Name": "P", "UnitPrice": "1"}, idempotency_key="k")
        with pytest.raises(TransientError):
            crm.read_all("products")


def test_a_listing_without_the_described_records_is_a_clear_error():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"rows": []})

    with _client(handler) as crm, pytest.raises(Exception) as err:
        crm.read_all("products")
    assert "no record list at 'results' (paging.records)" in str(err.value)
    assert "profile 'bottlecrm'" in str(err.value)


def test_create_answering_only_an_id_is_read_back_and_auth_styles():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "POST":
            return httpx.Response(200, json={"error": False, "id": "9b2f0e55-0000-4000-8000-000000000001"})
        return httpx.Response(200, json={"account_obj": {"id": "9b2f0e55-0000-4000-8000-000000000001",
                                                         "name": "Globex", "email": "g@x.example"}})

    with _client(handler) as crm:
        got = crm.create("customers", {"Type": "organization", "Name": "Globex", "Email": "g@x.example"},
                         idempotency_key="k")
    assert got["Id"] == "account:9b2f0e55-0000-4000-8000-000000000001"
    assert (got["Type"], got["Name"], got["Email"]) == ("organization", "Globex", "g@x.example")
    post, read = seen
    assert json.loads(post.content)["name"] == "Globex" and "Type" not in json.loads(post.content)
    assert post.url.path == "/api/accounts/" and read.url.path.endswith("/accounts/9b2f0e55-0000-4000-8000-000000000001/")
    assert post.headers["authorization"] == "Bearer secret" and "idempotency-key" not in post.headers

    def paged(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    seen.clear()
    with _client(paged, "paged") as crm:
        crm.read_all("products")
    assert seen[0].headers["x-api-key"] == "secret" and "authorization" not in seen[0].headers


def test_crm_naming_with_a_non_contract_profile_is_refused_and_unknown_style_too(tmp_path: Path):
    with pytest.raises(ValueError, match="CRM_NAMING: applies to contract-shaped profiles only"):
        CrmClient.from_env({"CRM_BASE_URL": "http://x", "CRM_API_TOKEN": "t", "CRM_PROFILE": "paged",
                            "CRM_NAMING": '{"fields": {"Email": "mail"}}'})
    from crm_wave.systems.crm.simulator import create_app

    with pytest.raises(ValueError, match="style: 'soap' is not one of contract, offset, paged"):
        create_app(db_path=tmp_path / "x.sqlite3", token="t", style="soap")


def test_paged_style_wants_its_api_key_and_the_client_reads_403_as_check_the_token(tmp_path: Path):
    from crm_wave.systems.crm.simulator import create_app
    from crm_wave.systems.serve import serve_in_thread

    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token="right", style="paged")) as base:
        assert httpx.get(f"{base}/api/v1/products", headers={"Authorization": "Bearer right"}).status_code == 403
        with CrmClient(base_url=f"{base}/api/v1", token="wrong", profile=load_profile("paged")) as crm, \
                pytest.raises(CrmAuthError, match="check the CRM token"):
            crm.read_all("products")
        with CrmClient(base_url=f"{base}/api/v1", token="right", profile=load_profile("paged")) as crm:
            made = crm.create("products", {"Name": "P", "UnitPrice": "2.50"}, idempotency_key="k")
            raw = httpx.get(f"{base}/api/v1/products/{made['Id']}", headers={"X-Api-Key": "right"}).json()
            assert raw["unit_price"] == 2.5 and isinstance(raw["id"], int)  # money as a number, an int id
            assert made["UnitPrice"] == "2.5" and made["Id"] == str(raw["id"])


def test_without_if_match_an_update_checks_the_record_did_not_change_since_collected(tmp_path: Path):
    import time

    from crm_wave.systems.crm.client import CrmVersionMismatch
    from crm_wave.systems.crm.simulator import create_app
    from crm_wave.systems.serve import serve_in_thread

    with serve_in_thread(create_app(db_path=tmp_path / "crm.sqlite3", token="t", style="offset")) as base, \
            CrmClient(base_url=f"{base}/api/v1", token="t", profile=load_profile("offset")) as crm:
        made = crm.create("customers", {"Type": "organization", "Name": "V"}, idempotency_key="k")
        collected = crm.get("customers", made["Id"])["Version"]  # UpdatedAt in ms stands in for a Version
        time.sleep(0.01)
        crm.patch("customers", made["Id"], {"City": "Oslo"}, if_match=collected)  # unchanged since: goes through
        with pytest.raises(CrmVersionMismatch):
            crm.patch("customers", made["Id"], {"City": "Bergen"}, if_match=collected)  # changed since: refused
        assert crm.get("customers", made["Id"])["City"] == "Oslo"


def test_an_invoice_create_writes_the_create_key_and_warns_once_when_the_crm_drops_it(caplog: pytest.LogCaptureFixture):
    sent: list[dict] = []
    keep = {"on": True}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/api/accounts/"):
            return httpx.Response(200, json={"account_obj": {"id": "a1"}, "contacts": [{"id": "c1"}]})
        body = json.loads(request.content)
        sent.append(body)
        invoice = {"id": f"i{len(sent)}", "invoice_number": f"INV-{len(sent)}", "account": {"id": "a1"},
                   "custom_fields": body["custom_fields"] if keep["on"] else {}, "line_items": []}
        return httpx.Response(201, json={"error": False, "invoice": invoice})

    order = {"OrderNumber": "W-1", "CustomerId": "account:a1", "Title": "T", "Lines": []}
    with _client(handler) as crm:
        made = crm.create("orders", order, idempotency_key="crm-wave:G1")
        assert sent[0]["custom_fields"] == {"crm_wave_key": "crm-wave:G1"} and "invoice_number" not in sent[0]
        assert made["OrderNumber"] == "INV-1" and made["_CreateKey"] == "crm-wave:G1"
        keep["on"] = False  # the custom field is not defined in this BottleCRM: its value is dropped
        with caplog.at_level("WARNING"):
            crm.create("orders", order, idempotency_key="crm-wave:G2")
            crm.create("orders", order, idempotency_key="crm-wave:G3")
        assert crm.connector is not None and len(crm.connector.key_warnings) == 1
    assert caplog.text.count("did not keep the create key at 'custom_fields.crm_wave_key'") == 1
    # A contract-shaped profile with a create key goes through the profile connector, which honours it.
    data = tomllib.loads((Path(__file__).parents[2] / "crm_wave/systems/crm/profiles/contract.toml").read_text())
    data["orders"]["writes"]["create_key"] = "Ref"
    assert load_profile("contract").contract_shaped and not parse_profile(data).contract_shaped
