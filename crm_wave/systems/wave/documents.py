"""The GraphQL documents the Wave client sends, read from `queries/*.graphql` with graphql-core.

Each `queries/*.graphql` file holds either one named operation (keyed by the file's stem,
`list_customers`...) or fragments. A document is sent as its operation followed by exactly
the fragments it spreads, transitively (graphql-core's `separate_operations`). A spread of a
fragment no file defines fails at import; `crm_wave_tests/wave/test_documents.py` validates
every document, and every batch the allow-list can compose, against Wave's schema.

Composing them with graphql-core at import cost every process ~0.15 s, so what is static is composed
once, ahead: `queries/composed.json` holds each fixed document, each fragment's text and the fragments
each one spreads (transitively), with a digest of the `*.graphql` files. A process whose files do not
match the digest composes them with graphql-core, as before (`python -m crm_wave.systems.wave.documents`
rewrites the file; `crm_wave_tests/wave/test_documents.py` fails while it is stale). The batched
mutation and the invoice lookup are then the operation's text followed by the texts of the fragments
it spreads, in the files' order: what `with_fragments` returns for them (the test compares the two).

Values are only ever sent as GraphQL variables: the only query text composed at run time is
the batched mutation and the batched invoice lookup, built from alias names (`m0`, `i0`...)
and the fixed mutation allow-list.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any

from crm_wave.systems.wave.models import MUTATIONS

if TYPE_CHECKING:
    from graphql import DocumentNode, FragmentDefinitionNode, Node, OperationDefinitionNode

__all__ = ["DOCUMENTS", "compose", "load_documents", "lookup_document",
           "mutation_document", "with_fragments"]

COMPOSED = "composed.json"


def load_documents(folder: Traversable) -> tuple[dict[str, OperationDefinitionNode], dict[str, FragmentDefinitionNode]]:
    """Parse the `*.graphql` files of `folder`: operations by file stem, fragments by name."""
    from graphql import FragmentDefinitionNode, OperationDefinitionNode, Source, parse

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


def _spread_names(node: DocumentNode | OperationDefinitionNode | FragmentDefinitionNode) -> list[str]:
    from graphql import FragmentSpreadNode, Visitor, visit

    class Spreads(Visitor):
        def __init__(self) -> None:
            super().__init__()
            self.names: list[str] = []

        def enter_fragment_spread(self, node: FragmentSpreadNode, *_: object) -> None:
            self.names.append(node.name.value)

    spreads = Spreads()
    visit(node, spreads)
    return spreads.names


def with_fragments(operation: OperationDefinitionNode,
                   fragments: dict[str, FragmentDefinitionNode] | None = None) -> str:
    """The text of `operation` followed by every fragment it spreads, transitively (and no unused one)."""
    from graphql import DocumentNode
    from graphql.utilities import separate_operations

    fragments = __getattr__("FRAGMENTS") if fragments is None else fragments
    assert operation.name is not None
    document = separate_operations(DocumentNode(definitions=(operation, *fragments.values())))[operation.name.value]
    missing = sorted(set(_spread_names(document)) - set(fragments))
    if missing:
        raise KeyError(f"unknown GraphQL fragment {missing[0]!r} in {operation.name.value}")
    return "\n\n".join(_text(d) for d in document.definitions)


def _text(node: Node) -> str:
    """A definition as its source spells it (the files' layout, not graphql-core's printer's)."""
    from graphql import print_ast

    if node.loc is None:
        return print_ast(node)
    return node.loc.source.body[node.loc.start:node.loc.end]


def _operation(text: str) -> OperationDefinitionNode:
    from graphql import OperationDefinitionNode, parse

    (definition,) = parse(text).definitions
    assert isinstance(definition, OperationDefinitionNode)
    return definition


def _digest(folder: Traversable) -> str:
    """What the composed file was made from: every `*.graphql` file's name and text."""
    h = hashlib.sha256()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".graphql"):
            h.update(entry.name.encode() + b"\0" + entry.read_bytes() + b"\0")
    return h.hexdigest()


def compose(folder: Traversable) -> dict[str, Any]:
    """With graphql-core: the fixed documents, each fragment's text, and the fragments each one spreads
    (itself included, transitively), with the files' digest: what `composed.json` holds."""
    operations, fragments = load_documents(folder)
    closure: dict[str, list[str]] = {}
    for name in fragments:
        seen, todo = {name}, [name]
        while todo:
            for spread in _spread_names(fragments[todo.pop()]):
                if spread in fragments and spread not in seen:
                    seen.add(spread)
                    todo.append(spread)
        closure[name] = sorted(seen)
    return {"digest": _digest(folder),
            "documents": {name: with_fragments(op, fragments) for name, op in operations.items()},
            "fragments": {name: _text(f) for name, f in fragments.items()}, "spreads": closure}


def _queries() -> Traversable:
    return resources.files(__package__).joinpath("queries")


def _load() -> dict[str, Any]:
    folder = _queries()
    try:
        composed = json.loads(folder.joinpath(COMPOSED).read_text(encoding="utf-8"))
    except FileNotFoundError:
        composed = None
    if composed is None or composed.get("digest") != _digest(folder):  # a query file was edited: compose anew
        composed = compose(folder)
    return composed


_COMPOSED = _load()

#: The fixed documents, fragments appended, by file stem (`list_customers`...).
DOCUMENTS: dict[str, str] = _COMPOSED["documents"]


def __getattr__(name: str) -> Any:
    """`OPERATIONS` and `FRAGMENTS`, the parsed files (graphql-core), on first use only."""
    if name in ("OPERATIONS", "FRAGMENTS"):
        if name not in globals():
            operations, fragments = load_documents(_queries())
            globals().update(OPERATIONS=operations, FRAGMENTS=fragments)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _with_spreads(operation: str, name: str, spread: list[str]) -> str:
    """`operation`'s text followed by the fragments `spread` needs, in the files' order (`with_fragments`)."""
    known = _COMPOSED["spreads"]
    missing = sorted(set(spread) - set(known))
    if missing:
        raise KeyError(f"unknown GraphQL fragment {missing[0]!r} in {name}")
    needed = {f for s in spread for f in known[s]}
    return "\n\n".join([operation, *(text for f, text in _COMPOSED["fragments"].items() if f in needed)])


def _result_fragment(name: str) -> str:
    return name[0].upper() + name[1:] + "Result"


@lru_cache(maxsize=64)
def lookup_document(field_name: str, fragment: str, count: int) -> str:
    """`count` aliased lookups (`i0: invoice(id: $id0) {...}`) of one business in one query."""
    params = "".join(f", $id{i}: ID!" for i in range(count))
    fields = "\n".join(f"    i{i}: {field_name}(id: $id{i}) {{ ...{fragment} }}" for i in range(count))
    return _with_spreads(f"query GetInvoices($businessId: ID!{params}) {{\n  business(id: $businessId) {{\n"
                         f"    id\n{fields}\n  }}\n}}", "GetInvoices", [fragment] if count else [])


@lru_cache(maxsize=256)
def mutation_document(names: tuple[str, ...]) -> str:
    """The batched aliased mutation for `names` (each from the allow-list)."""
    params = ", ".join(f"$i{i}: {MUTATIONS[n].input_type}!" for i, n in enumerate(names))
    fields = "\n".join(f"  m{i}: {n}(input: $i{i}) {{ ...{_result_fragment(n)} }}" for i, n in enumerate(names))
    return _with_spreads(f"mutation WaveBatch({params}) {{\n{fields}\n}}", "WaveBatch",
                         [_result_fragment(n) for n in names])


if __name__ == "__main__":  # rewrite queries/composed.json after editing a query file
    from pathlib import Path

    target = Path(__file__).with_name("queries") / COMPOSED
    target.write_text(json.dumps(compose(_queries()), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {target}")
