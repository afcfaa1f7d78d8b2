"""The GraphQL documents the Wave client sends are valid against Wave's schema, so a typo in
`queries/*.graphql` (or in the batch builders) fails here rather than in a sync."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from graphql import GraphQLSchema, GraphQLSyntaxError, build_schema, parse, validate

from crm_wave.systems.wave import documents
from crm_wave.systems.wave.documents import DOCUMENTS, load_documents, lookup_document, mutation_document, with_fragments
from crm_wave.systems.wave.models import MUTATION_NAMES

QUERIES = Path(documents.__file__).with_name("queries")
SCHEMA = Path(documents.__file__).with_name("simulator") / "schema.graphql"  # a copy of Wave's public schema


@pytest.fixture(scope="module")
def schema() -> GraphQLSchema:
    return build_schema(SCHEMA.read_text(encoding="utf-8"))


def problems(schema: GraphQLSchema, texts: dict[str, str]) -> list[str]:
    """Every validation error of `texts` (unknown fields, types, unused or unknown fragments...)."""
    return [f"{name}: {error.message}" for name, text in texts.items() for error in validate(schema, parse(text))]


def test_every_document_validates_against_wave_schema(schema: GraphQLSchema) -> None:
    assert set(DOCUMENTS) >= {"list_customers", "list_products", "list_invoices", "list_businesses",
                              "get_customer", "get_product", "get_invoice", "change_heads"}
    assert problems(schema, DOCUMENTS) == []


def test_every_batch_the_client_composes_validates(schema: GraphQLSchema) -> None:
    batches = {name: mutation_document((name,)) for name in sorted(MUTATION_NAMES)}
    batches["all, twice"] = mutation_document(tuple(sorted(MUTATION_NAMES)) * 2)
    batches["lookup 1"] = lookup_document("invoice", "InvoiceFields", 1)
    batches["lookup 50"] = lookup_document("invoice", "InvoiceFields", 50)
    assert problems(schema, batches) == []


def test_a_document_carries_only_the_fragments_it_spreads() -> None:
    text = DOCUMENTS["get_customer"]
    assert "fragment CustomerFields on Customer" in text
    assert "fragment InvoiceFields" not in text and "fragment PageFields" not in text
    batch = mutation_document(("invoiceDelete",))
    assert "fragment InputErrorFields" in batch and "fragment InvoiceFields" not in batch


def test_a_misspelt_field_is_caught(schema: GraphQLSchema, tmp_path: Path) -> None:
    shutil.copytree(QUERIES, tmp_path / "queries")
    path = tmp_path / "queries" / "customer_fields.graphql"
    path.write_text(path.read_text().replace("  firstName\n", "  fristName\n"))
    operations, fragments = load_documents(tmp_path / "queries")
    found = problems(schema, {name: with_fragments(op, fragments) for name, op in operations.items()})
    assert found and all("fristName" in p for p in found)
    assert any(p.startswith("get_customer:") for p in found)


def test_a_spread_of_an_unknown_fragment_is_refused_by_name(tmp_path: Path) -> None:
    shutil.copytree(QUERIES, tmp_path / "queries")
    path = tmp_path / "queries" / "get_product.graphql"
    path.write_text(path.read_text().replace("...ProductFields", "...ProductFeilds"))
    operations, fragments = load_documents(tmp_path / "queries")
    with pytest.raises(KeyError, match="ProductFeilds"):
        with_fragments(operations["get_product"], fragments)


def test_a_file_with_a_syntax_error_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.graphql").write_text("query Broken { business(id: 1) { id }\n")
    with pytest.raises(GraphQLSyntaxError, match="broken.graphql"):
        load_documents(tmp_path)


def test_the_composed_file_is_fresh_and_composes_what_graphql_core_composes() -> None:
    """`queries/composed.json` (read at import instead of parsing the files) matches the files: rewrite it
    with `python -m crm_wave.systems.wave.documents` after editing a query. The batches built from it
    are, text for text, what graphql-core's `separate_operations` builds."""
    import json

    from crm_wave.systems.wave.documents import _operation, compose

    composed = json.loads((QUERIES / "composed.json").read_text(encoding="utf-8"))
    assert composed == compose(QUERIES), "stale: run python -m crm_wave.systems.wave.documents"
    names = sorted(MUTATION_NAMES)
    for batch in [(n,) for n in names] + [tuple(names), tuple(reversed(names)) * 2]:
        text = mutation_document(batch)
        assert text == with_fragments(_operation(text.split("\n\n", 1)[0])), batch
    for count in (1, 3):
        text = lookup_document("invoice", "InvoiceFields", count)
        assert text == with_fragments(_operation(text.split("\n\n", 1)[0]))


def test_an_edited_query_file_is_composed_anew_not_read_stale(tmp_path: Path) -> None:
    from crm_wave.systems.wave.documents import _digest

    shutil.copytree(QUERIES, tmp_path / "queries")
    path = tmp_path / "queries" / "customer_fields.graphql"
    before = _digest(tmp_path / "queries")
    path.write_text(path.read_text().replace("  firstName\n", "  firstName\n  lastName\n", 1))
    assert _digest(tmp_path / "queries") != before  # so `_load` composes with graphql-core instead
