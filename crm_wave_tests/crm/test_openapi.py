"""The simulator's `/openapi.json`: a valid OpenAPI 3.0 document that the live server keeps to.

`openapi-spec-validator` is not a dependency; the document is checked against the
official OpenAPI 3.0 JSON Schema that schemathesis ships, plus structural checks.
Then a bounded schemathesis run (positive and negative data, every operation)
must find no 5xx and no response that breaks the document.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.definitions import OPENAPI_30

from crm_wave.systems.crm.simulator import create_app, seed
from crm_wave.systems.crm.simulator.openapi import build_openapi
from crm_wave.systems.serve import serve_in_thread

TOKEN = "openapi-test-token"
RESOURCES = {"customers": "Customer", "products": "Product", "orders": "Order"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A seeded simulator (module-wide: the fuzz run and the response checks share it)."""
    db = tmp_path_factory.mktemp("crm-openapi") / "crm.sqlite3"
    seed(db, seed=9, customers=20, products=10, orders=10)
    with serve_in_thread(create_app(db_path=db, token=TOKEN)) as base:
        yield base


@pytest.fixture(scope="module")
def document(live: str) -> dict[str, Any]:
    r = httpx.get(f"{live}/openapi.json")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return r.json()


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _json_schema(doc: dict[str, Any], node: Any) -> Any:
    """An OpenAPI 3.0 schema as plain JSON Schema: refs inlined, `nullable` as a null type."""
    if isinstance(node, list):
        return [_json_schema(doc, n) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(doc, _resolve(doc, node["$ref"]))
    out = {k: _json_schema(doc, v) for k, v in node.items() if k not in ("nullable", "format")}
    if node.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


# ---------------------------------------------------------------------- the document itself


def test_document_is_valid_openapi_30(document: dict[str, Any]) -> None:
    assert document == build_openapi()
    assert document["openapi"].startswith("3.0.")
    jsonschema.Draft4Validator(OPENAPI_30).validate(document)
    # schemathesis accepts it as well (it refuses schemas it cannot load)
    loaded = schemathesis.openapi.from_dict(copy.deepcopy(document))
    assert sum(1 for r in loaded.get_all_operations() if r.ok()) >= 15


def test_metaschema_check_can_fail() -> None:
    broken = build_openapi()
    broken["paths"]["/api/v1/customers"]["get"]["responses"] = "none"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(OPENAPI_30).validate(broken)


def test_every_ref_resolves_and_every_schema_is_valid(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert refs
    for ref in refs:
        _resolve(document, ref)
    for _name, schema in document["components"]["schemas"].items():
        jsonschema.Draft7Validator.check_schema(_json_schema(document, schema))


@pytest.mark.parametrize("resource", list(RESOURCES))
def test_every_contract_call_is_described(document: dict[str, Any], resource: str) -> None:
    entity = RESOURCES[resource]
    paths = document["paths"]
    collection, item = paths[f"/api/v1/{resource}"], paths[f"/api/v1/{resource}/{{Id}}"]
    assert set(collection) == {"get", "post"} and set(item) >= {"get", "patch", "delete"}

    def params(op: dict[str, Any], shared: list[Any] | None = None) -> set[str]:
        return {_resolve(document, p["$ref"])["name"] for p in (shared or []) + op.get("parameters", [])}

    assert params(collection["get"]) == {"since", "limit"}
    assert params(collection["post"]) == {"Idempotency-Key"}
    assert params(item["patch"], item["parameters"]) == {"Id", "If-Match"}
    assert params(item["delete"], item["parameters"]) == {"Id", "If-Match"}
    expected = [
        ("get", collection, {"200", "400", "401", "429", "503"}),
        ("post", collection, {"201", "400", "401", "409", "422", "429", "503"}),
        ("get", item, {"200", "401", "404", "429", "503"}),
        ("patch", item, {"200", "400", "401", "404", "409", "412", "422", "429", "503"}),
        ("delete", item, {"204", "400", "401", "404", "412", "429", "503"}),
    ]
    for method, path_item, codes in expected:
        responses = path_item[method]["responses"]
        assert codes <= set(responses), (method, codes - set(responses))
        for code, response in responses.items():
            if code >= "400":
                body = _resolve(document, response["$ref"])
                assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
    assert _resolve(document, collection["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]) is \
        document["components"]["schemas"][f"{entity}Create"]
    assert "Retry-After" in document["components"]["responses"]["rate_limited"]["headers"]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}


# ---------------------------------------------------------------------- live responses keep to it


def test_live_responses_match_their_schemas(live: str, document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"{live}/api/v1", headers=headers) as c:
        for resource, entity in RESOURCES.items():
            page = c.get(f"/{resource}", params={"limit": 5}).json()
            jsonschema.validate(page, _json_schema(document, schemas[f"{entity}Page"]))
            one = c.get(f"/{resource}/{page['items'][0]['Id']}").json()
            jsonschema.validate(one, _json_schema(document, schemas[entity]))
            with pytest.raises(jsonschema.ValidationError):  # the check has teeth
                jsonschema.validate({**one, "Surprise": 1}, _json_schema(document, schemas[entity]))
        made = c.post("/products", json={"Name": "Doomed", "UnitPrice": "1"}).json()
        cursor = c.get("/products", params={"limit": 1000}).json()["next_cursor"]
        c.delete(f"/products/{made['Id']}")
        tomb = c.get("/products", params={"since": cursor}).json()
        assert tomb["items"][0]["Deleted"] is True
        jsonschema.validate(tomb, _json_schema(document, schemas["ProductPage"]))
        error = c.post("/orders", json={"OrderNumber": "x"})
        assert error.status_code == 422
        jsonschema.validate(error.json(), _json_schema(document, schemas["Error"]))


# ---------------------------------------------------------------------- property-based run

_CONFIG = f"""
[auth.openapi.bearerAuth]
bearer = "{TOKEN}"

# Schema-valid data may still be refused for reasons a schema cannot state (unknown
# CustomerId, 'XX' as a country code, DueDate before OrderDate): a 422 is correct then.
[checks.positive_data_acceptance]
enabled = false
"""


def test_schemathesis_finds_no_server_error_or_schema_violation(live: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live}/openapi.json", config=schemathesis.Config.from_str(_CONFIG))
    known_ids = {"customers": "C1005", "products": "P1003", "orders": "O1002"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if op.path.startswith("/_sim/"):
            continue  # fuzzing the fault switches would break the run itself
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategy = op.as_strategy(generation_mode=mode)
            if "{Id}" in op.path:  # also hit entities that exist, not only random Ids
                existing = known_ids[op.path.split("/")[3]]
                strategy = st.one_of(strategy, op.as_strategy(generation_mode=mode, path_parameters={"Id": existing}))

            @given(case=strategy)
            @settings(max_examples=25, deadline=None, database=None, derandomize=True,
                      phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
            def run(case: Any) -> None:
                case.call_and_validate()

            try:
                run()
            except BaseException as exc:  # FailureGroup is an exception group
                failures.append(f"{op.label} [{mode.value}]: {str(exc)[:2000]}")
    assert operations >= 15
    assert not failures, "\n\n".join(failures)


def test_schemathesis_run_can_fail(tmp_path: Path) -> None:
    """The same run against a document that lies about a response must report it."""
    db = tmp_path / "crm.sqlite3"
    with serve_in_thread(create_app(db_path=db, token=TOKEN)) as base:
        doc = build_openapi()
        doc["components"]["schemas"]["Error"]["properties"]["error"] = {"type": "integer"}
        schema = schemathesis.openapi.from_dict(doc, config=schemathesis.Config.from_str(_CONFIG))
        op = schema["/api/v1/products/{Id}"]["GET"]

        @given(case=op.as_strategy())
        @settings(max_examples=3, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(base_url=base)

        with pytest.raises(BaseException, match="(?i)schema"):
            run()
