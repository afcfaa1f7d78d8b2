"""The rows a collect writes, checked against the dataset's definition rather than against the code that
writes them: `body` is the record as JSON with sorted keys, compact and unescaped UTF-8; `_hash` the SHA-1 of
that text ("null" for a delete); a re-read of the same records writes nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from crm_wave.store import datasets
from crm_wave.store.db import Store
from crm_wave.sync.collect import collect

NOW = datetime(2026, 1, 1, tzinfo=UTC)

ODD = [
    {"Id": "C1", "Name": "Østby ☃ 😀 AS", "Version": 3, "UpdatedAt": "2026-01-01T00:00:00.001Z", "Zeta": None, "Alpha": 1.5},
    {"Id": "C2", "Name": 'quote " back \\ slash\nnew line\ttab', "Version": 1, "UpdatedAt": "2026-01-01T00:00:00.002Z",
     "Nested": {"b": [1, {"y": None, "x": "ü"}], "a": True}},
    {"Id": "C3", "Name": "Huge", "Big": 2**70, "Version": 1, "UpdatedAt": "2026-01-01T00:00:00.003Z"},  # beyond orjson
    {"Id": "C4", "Deleted": True, "Version": 2, "UpdatedAt": "2026-01-01T00:00:00.004Z"},
    {"Id": 5, "Name": "numeric id", "Version": None, "UpdatedAt": None, "Lines": []},
]


@dataclass
class _Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


class _Crm:
    """A CRM change feed of fixed records, in pages of two (what collect asks of a CRM client)."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def always_full(self, resource: str) -> bool:
        return False

    def read_changes(self, resource: str, since: str | None, *, limit: int = 1000) -> Iterator[_Page]:
        for start in range(0, len(self.items), 2):
            yield _Page(self.items[start:start + 2], str(start + 2))


class _Wave:
    """Wave customer pages of fixed records."""

    def __init__(self, nodes: list[dict[str, Any]]) -> None:
        self.nodes = nodes

    def iter_customers(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        yield self.nodes[:1]
        yield self.nodes[1:]

    def iter_products(self, *, modified_after: str | None = None) -> Iterator[list[dict[str, Any]]]:
        return iter(())

    def iter_invoices(self, *, modified_after: str | None = None, status: str | None = None) -> Iterator[list[dict[str, Any]]]:
        return iter(())


def _expected_body(record: dict[str, Any]) -> str:
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _rows(store: Store, name: str) -> list[tuple[Any, ...]]:
    with store.connect() as con:
        return con.execute(f"SELECT _id, _seq, _hash, _deleted, _previous, _source_id, _modified, _version, body::VARCHAR, "
                           f"json_valid(body) FROM {name} ORDER BY _seq").fetchall()


@pytest.mark.parametrize("scan_batch", [25_000, 2])
def test_crm_rows_are_the_records_as_sorted_compact_json_hashed_with_sha1(tmp_path: Path, monkeypatch, scan_batch: int) -> None:
    """Handed to DuckDB in one Arrow batch or in batches of two versions (`SCAN_BATCH`): the same rows."""
    monkeypatch.setattr(datasets, "SCAN_BATCH", scan_batch)
    batches = []
    monkeypatch.setattr(datasets, "_versions_arrow",
                        lambda frame, f=datasets._versions_arrow: batches.append(len((t := f(frame)).to_batches())) or t)
    store = Store(tmp_path / "s.duckdb")
    result = collect(store, "crm", "customer", _Crm(ODD), NOW, full=True)
    assert result.written == 4  # the delete of a record never seen writes nothing
    expected = []
    for seq, record in enumerate([r for r in ODD if not r.get("Deleted")], start=1):
        body = _expected_body(record)
        expected.append((f"crm-customer:{record['Id']}", seq, hashlib.sha1(body.encode()).hexdigest(), False, None,
                         str(record["Id"]), record["UpdatedAt"], record["Version"], body, True))
    assert _rows(store, "crm_customer") == expected
    assert collect(store, "crm", "customer", _Crm(ODD), NOW, full=True).written == 0  # same hashes: nothing new
    assert max(batches) == (1 if scan_batch > len(ODD) else -(-len(ODD) // scan_batch))


def test_a_delete_is_a_row_without_body_hashed_as_null(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    collect(store, "crm", "customer", _Crm(ODD[:1]), NOW, full=True)
    collect(store, "crm", "customer", _Crm([{"Id": "C1", "Deleted": True, "Version": 4, "UpdatedAt": "2026-01-02T00:00:00Z"}]),
            NOW, full=False)
    rows = _rows(store, "crm_customer")
    assert rows[1] == ("crm-customer:C1", 2, hashlib.sha1(b"null").hexdigest(), True, 1, "C1", "2026-01-02T00:00:00Z", 4,
                       None, None)


def test_wave_rows_are_the_nodes_as_sorted_compact_json(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    nodes = [{"id": "QnVz1", "name": "Å 😀", "modifiedAt": "2025-01-01T00:00:00.000Z", "address": {"z": 1, "a": None}},
             {"id": "QnVz2", "name": "two", "modifiedAt": "2025-01-02T00:00:00.000Z", "amount": {"value": "1.50"}}]
    result = collect(store, "wave", "customer", _Wave(nodes), NOW, full=True)
    assert (result.written, result.cursor) == (2, "2025-01-02T00:00:00.000Z")
    assert [(r[0], r[2], r[6], r[7], r[8]) for r in _rows(store, "wave_customer")] == [
        (f"wave-customer:{n['id']}", hashlib.sha1(_expected_body(n).encode()).hexdigest(), n["modifiedAt"], None,
         _expected_body(n)) for n in nodes]
