"""The GraphQL documents the Wave client sends, read from `queries/*.graphql` with graphql-core.

Each `queries/*.graphql` file holds either one named operation (keyed by the file's stem,
`list_customers`...) or fragments. A document is sent as its operation followed by exactly
the fragments it spreads, transitively (graphql-core's `separate_operations`). A spread of a
fragment no file defines fails at import; `crm_wave_tests/wave/test_documents.py` validates
every document, and every batch the allow-list can compose, against Wave's schema.

Values are only ever sent as GraphQL variables: the only query text composed at run time is
the batched mutation and the batched invoice lookup, built from alias names (`m0`, `i0`...)
and the fixed mutation allow-list.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    Node,
    OperationDefinitionNode,
    Source,
    Visitor,
    parse,
    print_ast,
    visit,
)
from graphql.utilities import separate_operations

from crm_wave.systems.wave.models import MUTATIONS

__all__ = ["DOCUMENTS", "FRAGMENTS", "OPERATIONS", "load_documents", "lookup_document", "mutation_document",
           "with_fragments"]


def load_documents(folder: Traversable) -> tuple[dict[str, OperationDefinitionNode], dict[str, FragmentDefinitionNode]]:
    """Parse the `*.graphql` files of `folder`: operations by file stem, fragments by name."""
    operations: dict[str, OperationDefinitionNode] = {}
    fragments: dict[str, FragmentDefinitionNode] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".graphql"):
            continue
        document = parse(Source(entry.read_text(encoding="utf-8"), entry.name))
        ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        frags = [d for d in document.definitions if isinstance(d, FragmentDefinitionNode)]
        if ops and (frags or len(ops) > 1):
            raise ValueError(f"{entry.name}: a query file holds one operation, or fragments only")
        if ops:
            if ops[0].name is None:
                raise ValueError(f"{entry.name}: the operation needs a name")
            operations[entry.name.removesuffix(".graphql")] = ops[0]
        for frag in frags:
            if frag.name.value in fragments:
                raise ValueError(f"{entry.name}: fragment {frag.name.value} is defined twice")
            fragments[frag.name.value] = frag
    return operations, fragments


class _Spreads(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: object) -> None:
        self.names.append(node.name.value)


def _spread_names(node: DocumentNode | OperationDefinitionNode) -> list[str]:
    spreads = _Spreads()
    visit(node, spreads)
    return spreads.names


def with_fragments(operation: OperationDefinitionNode,
                   fragments: dict[str, FragmentDefinitionNode] | None = None) -> str:
    """The text of `operation` followed by every fragment it spreads, transitively (and no unused one)."""
    fragments = FRAGMENTS if fragments is None else fragments
    assert operation.name is not None
    document = separate_operations(DocumentNode(definitions=(operation, *fragments.values())))[operation.name.value]
    missing = sorted(set(_spread_names(document)) - set(fragments))
    if missing:
        raise KeyError(f"unknown GraphQL fragment {missing[0]!r} in {operation.name.value}")
    return "\n\n".join(_text(d) for d in document.definitions)


def _text(node: Node) -> str:
    """A definition as its source spells it (the files' layout, not graphql-core's printer's)."""
    if node.loc is None:
        return print_ast(node)
    return node.loc.source.body[node.loc.start:node.loc.end]


def _operation(text: str) -> OperationDefinitionNode:
    (definition,) = parse(text).definitions
    assert isinstance(definition, OperationDefinitionNode)
    return definition


OPERATIONS, FRAGMENTS = load_documents(resources.files(__package__).joinpath("queries"))

#: The fixed documents, fragments appended, by file stem (`list_customers`...).
DOCUMENTS: dict[str, str] = {name: with_fragments(op) for name, op in OPERATIONS.items()}


def _result_fragment(name: str) -> str:
    return name[0].upper() + name[1:] + "Result"


@lru_cache(maxsize=64)
def lookup_document(field_name: str, fragment: str, count: int) -> str:
    """`count` aliased lookups (`i0: invoice(id: $id0) {...}`) of one business in one query."""
    params = "".join(f", $id{i}: ID!" for i in range(count))
    fields = "\n".join(f"    i{i}: {field_name}(id: $id{i}) {{ ...{fragment} }}" for i in range(count))
    return with_fragments(_operation(f"query GetInvoices($businessId: ID!{params}) {{\n  business(id: $businessId) {{\n"
                                     f"    id\n{fields}\n  }}\n}}"))


@lru_cache(maxsize=256)
def mutation_document(names: tuple[str, ...]) -> str:
    """The batched aliased mutation for `names` (each from the allow-list)."""
    params = ", ".join(f"$i{i}: {MUTATIONS[n].input_type}!" for i, n in enumerate(names))
    fields = "\n".join(f"  m{i}: {n}(input: $i{i}) {{ ...{_result_fragment(n)} }}" for i, n in enumerate(names))
    return with_fragments(_operation(f"mutation WaveBatch({params}) {{\n{fields}\n}}"))
