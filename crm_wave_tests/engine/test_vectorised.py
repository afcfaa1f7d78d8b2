"""The vectorised normalisers, cells and canonical mapping give exactly what the per-record
Python functions give (those stay the reference)."""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal, assert_series_equal

from crm_wave.cli_errors import explain
from crm_wave.mapping.canonical import (LINE_DTYPE, UnreadableRecord, canonical_fields, crm_to_canonical, exact_cells,
                                        wave_to_canonical)
from crm_wave.mapping.normalize import PY_WHITESPACE, SMALL_SERIES, canonical, canonical_series
from crm_wave.store.db import Store, Version
from crm_wave.logic.share import json_literal_columns
from crm_wave.sync.cells import json_literal_series, lines_cell_series, to_cell
from crm_wave.sync.global_step import _fragment_query, read_canonical
from crm_wave.sync.names import dataset

TEXTS = [None, "", "  ", "plain", "  padded\t", "\x1cseparated\x1f", "\u3000ideographic\u3000", "Tromsø", "ÅSE Ærlig",
         "İstanbul", "straße", "MiXeD@Example.COM", " no ", "us-ca", "2026-01-31T10:00:00Z", "2026-1-3", "émoji ☕ 😀",
         "a\"quote", "back\\slash", "ctl\x07char", "\x7fdel", "ﬀ ligature", "Σίσυφος", "ΑΣ"]
DECIMALS = [None, "", "1", "1.", "-0", "-0.001", "0.005", "149.9", "7.25", "1.123456789", "-1.005", "abc", "NaN", "Infinity",
            " 12.5 ", "1e3", "+.5", "+5", "٣", "007.50", "99999999999999999999.5", "1_000", "10", "0.125", "2.675",
            "123456789.123456789", "9999999999.999999995", "-12.3456789",
            # more digits than the decimal context holds once quantized: left as they are
            "1e309", "-1e400", "1e308", "1E+27", "9" * 400, "1e-400"]


@pytest.mark.parametrize("kind", ["text", "email", "casefold", "code", "date"])
def test_text_kinds_match_python(kind):
    got = canonical_series(kind, pl.Series(TEXTS, dtype=pl.String))
    assert got.to_list() == [canonical(kind, v) for v in TEXTS]


@pytest.mark.parametrize("kind", ["text", "email", "casefold", "code", "date", "decimal2", "decimal5", "decimal8"])
def test_a_few_values_take_the_per_value_path_and_match_the_vectorised_one(kind):
    values = TEXTS + DECIMALS
    assert len(TEXTS) > SMALL_SERIES and len(DECIMALS) > SMALL_SERIES  # the tests above run the vectorised path
    whole = canonical_series(kind, pl.Series(values, dtype=pl.String)).to_list()
    parts = [v for i in range(0, len(values), SMALL_SERIES)
             for v in canonical_series(kind, pl.Series(values[i:i + SMALL_SERIES], dtype=pl.String)).to_list()]
    assert parts == whole == [canonical(kind, v) for v in values]


@pytest.mark.parametrize("kind", ["decimal2", "decimal5", "decimal8"])
def test_decimals_match_python(kind):
    got = canonical_series(kind, pl.Series(DECIMALS, dtype=pl.String))
    assert got.to_list() == [canonical(kind, v) for v in DECIMALS]


def test_whitespace_is_what_str_strip_removes():
    assert set(PY_WHITESPACE) == {chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()}


def test_json_literals_match_json_dumps():
    assert json_literal_series(pl.Series(TEXTS, dtype=pl.String)).to_list() == [json.dumps(v) for v in TEXTS]
    # Share rows keep non-ASCII text readable (as json.dumps(ensure_ascii=False) writes it).
    assert json_literal_series(pl.Series(TEXTS, dtype=pl.String), ensure_ascii=False).to_list() == \
        [json.dumps(v, ensure_ascii=False) for v in TEXTS]


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_json_literal_columns_match_json_dumps(ensure_ascii):
    frame = pl.DataFrame({"v": TEXTS}, schema={"v": pl.String})
    out = json_literal_columns(frame, {"j": "v", "k": "v"}, ensure_ascii=ensure_ascii)
    assert out["j"].to_list() == out["k"].to_list() == [json.dumps(v, ensure_ascii=ensure_ascii) for v in TEXTS]


def test_lines_cells_match_to_cell():
    lines = [
        [{"Description": None, "ProductId": "crm-product:P1", "Quantity": "1.00", "UnitPrice": "2.50"},
         {"Description": 'Tromsø "x"', "ProductId": "p2", "Quantity": "2.00", "UnitPrice": "0.00"}],
        [],
        None,
        [{"Description": "a\\b\x01", "ProductId": None, "Quantity": None, "UnitPrice": None}],
    ]
    got = lines_cell_series(pl.Series("Lines", lines, dtype=pl.List(LINE_DTYPE)))
    assert_series_equal(got, pl.Series("Lines", [to_cell(v) for v in lines], dtype=pl.String))


# Bodies a source could send, the odd ones included: numbers and booleans in text fields,
# objects where a value is expected, escaped characters, lines that are not lists.
CRM_BODIES = {
    "customer": [
        {"Id": "C1", "Type": "person", "Name": " Ola ", "FirstName": "Ola", "LastName": "Nordmann", "Email": " OLA@X.NO",
         "Country": "no", "Currency": "nok", "State": "no-03", "ZipCode": "0150", "Phone": "+47 1"},
        {"Id": "C2", "Name": 42, "CustomerNumber": 1001, "Email": True, "Description": {"a": 1}},
        {"Id": "C3", "Name": "Quote \"AS\"", "City": "Back\\slash", "Website": "ctl\x07"},
        {"Id": "C4", "Name": "Tromsø Fisk", "City": "Tromsø", "Type": "organization"},
        {"Id": "C5"},
        {"Id": "C6", "Name": "", "Email": "  ", "Type": " "},
        {"Id": "C7", "Name": 1.5e20, "Phone": None, "Fax": [1, 2]},
    ],
    "product": [
        {"Id": "P1", "Name": " Widget ", "UnitPrice": "10", "IsArchived": False},
        {"Id": "P2", "Name": "Gadget", "UnitPrice": 12.5, "IsArchived": True},
        {"Id": "P3", "Name": "Odd", "UnitPrice": "abc", "IsArchived": "false"},
        {"Id": "P4", "Name": "Odder", "UnitPrice": "1.123456789", "IsArchived": 0},
        {"Id": "P5", "Name": "None archived"},
    ],
    "order": [
        {"Id": "O1", "OrderNumber": "SO-1", "CustomerId": "C1", "OrderDate": "2026-01-05T10:00:00", "Status": "Confirmed",
         "Lines": [{"ProductId": "P1", "Quantity": "2", "UnitPrice": "10"}, {"ProductId": "P9", "Description": "Ekstra ø",
                                                                             "Quantity": "1.5", "UnitPrice": "0.125"}]},
        {"Id": "O2", "OrderNumber": 7, "Lines": []},
        {"Id": "O3", "OrderNumber": "SO-3", "Lines": None, "Status": None, "PaymentStatus": "SAVED"},
        {"Id": "O4", "OrderNumber": "SO-4", "Lines": [{"ProductId": "P1", "Quantity": 2, "UnitPrice": "10"}]},
        {"Id": "O5", "OrderNumber": "SO-5", "Lines": "", "Total": "12.345"},
        {"Id": "O6", "OrderNumber": "SO-6", "Lines": [{"ProductId": None, "Quantity": "x", "UnitPrice": " 3 "}],
         "Status": "DRAFT", "Memo": "line\nbreak"},
        # Lines absent, an empty line, a line's values of other JSON types. (Lines the Python mapping cannot
        # read, such as a line that is not an object, stop it: docs/benchmarks.md, "Session 19".)
        {"Id": "O7", "OrderNumber": "SO-7"},
        {"Id": "O13", "OrderNumber": "SO-13", "Lines": [{}]},
        {"Id": "O14", "OrderNumber": "SO-14", "Lines": [{"ProductId": {"id": "P1"}, "Quantity": [1], "UnitPrice": True}]},
    ],
}
WAVE_BODIES = {
    "customer": [
        {"id": "W1", "name": "Ola Nordmann", "firstName": "Ola", "lastName": "Nordmann", "email": "ola@x.no",
         "currency": {"code": "nok"}, "address": {"addressLine1": "Gate 1", "city": "Oslo", "province": {"code": "NO-03"},
                                                   "country": {"code": "no"}, "postalCode": "0150"}},
        {"id": "W2", "name": "Acme", "firstName": "Ola", "lastName": None, "address": None, "currency": None},
        {"id": "W3", "name": None, "firstName": None, "lastName": "Solo", "address": "not an object"},
        {"id": "W4", "name": "Org AS", "displayId": 12, "address": {"city": 5}},
        {"id": "W5", "name": "  ", "firstName": "A", "lastName": "B", "address": [1, 2], "email": "x\\y"},
    ],
    "product": [
        {"id": "WP1", "name": "Widget", "unitPrice": "10.00000", "isArchived": False},
        {"id": "WP2", "name": "Gadget", "unitPrice": "1.5", "isArchived": True, "description": None},
        {"id": "WP3", "name": "Odd", "unitPrice": 3, "isArchived": None},
    ],
    "order": [
        {"id": "WI1", "invoiceNumber": "SO-1", "status": "SAVED", "customer": {"id": "W1"}, "currency": {"code": "NOK"},
         "invoiceDate": "2026-01-05", "total": {"value": "20.00"}, "amountPaid": {"value": "0"},
         "items": [{"product": {"id": "WP1"}, "description": None, "quantity": "2", "unitPrice": "10"}]},
        {"id": "WI2", "invoiceNumber": "SO-2", "status": "DRAFT", "customer": None, "items": []},
        {"id": "WI3", "invoiceNumber": "SO-3", "status": "PAID", "items": [{"product": None, "quantity": "1", "unitPrice": "1"}]},
        {"id": "WI4", "invoiceNumber": "SO-4", "status": "OVERDUE", "items": [{"product": {"id": 5}, "quantity": 1, "unitPrice": "1"}]},
        {"id": "WI5", "invoiceNumber": "SO-5", "status": "SAVED"},
        {"id": "WI6", "invoiceNumber": "SO-6", "status": "SAVED", "items": None},
        {"id": "WI7", "invoiceNumber": "SO-7", "status": "SAVED", "items": [{"product": "WP1", "quantity": "1", "unitPrice": "1"}]},
        {"id": "WI8", "invoiceNumber": "SO-8", "status": "SAVED", "items": [{}, {"product": {"id": ["WP1"]}}]},
    ],
}


def _python_cells(system: str, entity: str, body: dict) -> dict:
    rec = (crm_to_canonical if system == "crm" else wave_to_canonical)(entity, body)
    out = {}
    for name, f in canonical_fields(entity).items():
        value = rec.get(name)
        out[name] = value if f.kind == "lines" else to_cell(value)
    if entity == "customer":
        out["Type"] = rec.get("Type")
    return out


@pytest.fixture(params=["vectorised", "exact"])
def path(request, monkeypatch):
    """Both ways `canonical_from_fragments` maps: vectorised (forced for a few rows) and exact."""
    from crm_wave.mapping import canonical

    monkeypatch.setattr(canonical, "SMALL", 0 if request.param == "vectorised" else 10**9)
    return request.param


@pytest.mark.parametrize("system", ["crm", "wave"])
@pytest.mark.parametrize("entity", ["customer", "product", "order"])
def test_read_canonical_matches_the_python_mapping(tmp_path: Path, system: str, entity: str, path: str):
    bodies = (CRM_BODIES if system == "crm" else WAVE_BODIES)[entity]
    store = Store(tmp_path / "s.duckdb")
    key = "Id" if system == "crm" else "id"
    name = dataset(system, entity)
    with store.connect() as con:
        store.append_versions(con, name, [
            Version(f"{name}:{b[key]}", b[key], str(i), False, "2026-01-01T00:00:00Z", None, b) for i, b in enumerate(bodies)
        ] + [Version(f"{name}:gone", "gone", "x", False, None, None, {key: "gone"})], datetime(2026, 1, 1))
        store.append_versions(con, name, [Version(f"{name}:gone", "gone", "y", True, None, None, None)], datetime(2026, 1, 2))
        frame = read_canonical(store, con, system, entity).sort(f"{system}_id")
    expected = {b[key]: _python_cells(system, entity, b) for b in bodies}
    for row in frame.iter_rows(named=True):
        sid = row.pop(f"{system}_id")
        deleted = row.pop("deleted")
        row.pop("modified")
        if sid == "gone":
            assert deleted and all(v is None for v in row.values())
            continue
        assert not deleted
        assert row == expected[sid], sid


def test_read_canonical_of_some_ids(tmp_path: Path, path: str):
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        store.append_versions(con, "crm_product", [
            Version(f"crm-product:{b['Id']}", b["Id"], b["Id"], False, None, None, b) for b in CRM_BODIES["product"]],
            datetime(2026, 1, 1))
        frame = read_canonical(store, con, "crm", "product", pl.Series(["P2", "P4", "nope"]))
    assert_frame_equal(
        frame.sort("crm_id").select("crm_id", "Name", "UnitPrice", "IsArchived"),
        pl.DataFrame({"crm_id": ["P2", "P4"], "Name": ["Gadget", "Odder"], "UnitPrice": ["12.50", "1.12346"],
                      "IsArchived": ["true", "false"]}),
    )


def test_line_products_read_by_duckdb_equal_polars_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many `Lines` cells are read by DuckDB, a few by polars: the same product ids, in the same order, for
    cells as `to_cell` writes them (non-ASCII escaped), with lines without a product, empty and missing cells."""
    import random

    from crm_wave.sync import refs

    rng = random.Random(7)
    ids = [t for t in TEXTS if t is not None] + ["crm-product:P1", "unlinked:wave:UHJvZHVjdDo5", "😀\"\\"]
    cells = []
    for _ in range(3000):
        pick = rng.random()
        if pick < 0.05:
            cells.append(None)
        elif pick < 0.1:
            cells.append(to_cell([]))
        else:
            lines = [{"Description": rng.choice(ids), "ProductId": rng.choice([*ids, None]),
                      "Quantity": "1.00", "UnitPrice": "2.50"} for _ in range(rng.randint(1, 4))]
            cells.append(to_cell(lines))
    series = pl.Series("Lines", cells, dtype=pl.String)
    monkeypatch.setattr(refs, "DUCKDB_LINES", 10**9)
    by_polars = refs.line_products(series)
    monkeypatch.setattr(refs, "DUCKDB_LINES", 1)
    by_duckdb = refs.line_products(series)
    assert by_duckdb.to_list() == by_polars.to_list()
    assert by_duckdb.dtype == by_polars.dtype == pl.List(pl.String)
    expected = [None if c is None else [line["ProductId"] for line in json.loads(c)] for c in cells]
    assert by_duckdb.to_list() == expected


@pytest.mark.parametrize("system", ["crm", "wave"])
def test_lines_that_are_not_a_list_of_objects_are_left_to_the_python_mapping(system: str) -> None:
    """`lines_ok` of the fragments query: false where the lines are there but not a list of objects (the
    rows the Python mapping then reads), true where they are one, empty, null or absent."""
    key = "Lines" if system == "crm" else "items"
    line = {"ProductId": "P1", "Quantity": "1"} if system == "crm" else {"product": {"id": "WP1"}, "quantity": "1"}
    # "lines": each line has a fragment (the parse alone tells); "list": an empty line as well (`json_type` tells).
    cases = {"lines": ([line, line], True), "list": ([line, {}], True), "empty": ([], True), "null": (None, True), "absent": (..., True),
             "text": ("", False), "object": (line, False), "number": (3, False), "a text line": ([line, "P2"], False),
             "a null line": ([None], False), "a list line": ([[line]], False)}
    bodies = {name: json.dumps({"Id": name} if value is ... else {"Id": name, key: value}) for name, (value, _) in cases.items()}
    structure, select, lines_ok = _fragment_query(system, "order")
    con = duckdb.connect()
    con.execute("CREATE TABLE b (name VARCHAR, body JSON)")
    con.executemany("INSERT INTO b VALUES (?, ?)", list(bodies.items()))
    got = dict(con.execute(f"SELECT name, {lines_ok} FROM (SELECT *, json_transform(body, ?) AS s FROM b)", [structure]).fetchall())
    assert got == {name: ok for name, (_, ok) in cases.items()}
    lines = dict(con.execute(f'SELECT name, len("Lines") FROM (SELECT name, {select} FROM '
                             f'(SELECT *, json_transform(body, ?) AS s FROM b))', [structure]).fetchall())
    assert lines["list"] == 2 and lines["empty"] == 0 and lines["null"] is None and lines["absent"] is None


@pytest.mark.parametrize(("system", "lines", "said"), [
    ("crm", {"ProductId": "P1"}, 'crm order BAD: Lines: not a list but {"ProductId": "P1"}'),
    ("crm", [{"ProductId": "P1"}, "P2"], 'crm order BAD: Lines: line 2 is not an object but "P2"'),
    ("wave", [None], "wave order BAD: items: line 1 is not an object but null"),
    ("wave", 3, "wave order BAD: items: not a list but 3"),
])
def test_lines_the_mapping_cannot_read_stop_the_read_with_the_record_and_the_field(
        tmp_path: Path, path: str, system: str, lines: object, said: str) -> None:
    key, lines_key = ("Id", "Lines") if system == "crm" else ("id", "items")
    bodies = [*(CRM_BODIES if system == "crm" else WAVE_BODIES)["order"][:2], {key: "BAD", lines_key: lines}]
    store = Store(tmp_path / "s.duckdb")
    name = dataset(system, "order")
    with store.connect() as con:
        store.append_versions(con, name, [Version(f"{name}:{b[key]}", b[key], str(i), False, None, None, b)
                                          for i, b in enumerate(bodies)], datetime(2026, 1, 1))
        with pytest.raises(UnreadableRecord) as caught:
            read_canonical(store, con, system, "order")
    assert str(caught.value).startswith(said + "; fix the record in ")
    shown = explain(caught.value)
    assert shown.kind == "sync_failed" and shown.message.startswith(said)


ODD_VALUES = [None, "", "  ", "x", 0, 1.5, -1, -0.0, True, 10**30, "1e309", "NaN", "١٢", [], [1], [None], [{}], [[]], {},
              {"a": 1}, {"id": None}]


def _mutated(node: object, rnd: random.Random) -> object:
    """`node` with some values swapped for odd ones (`ODD_VALUES`), at any depth."""
    if isinstance(node, dict):
        return {k: (rnd.choice(ODD_VALUES) if (r := rnd.random()) < 0.2 else _mutated(v, rnd) if r < 0.4 else v)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_mutated(x, rnd) if rnd.random() < 0.5 else rnd.choice(ODD_VALUES) for x in node]
    return node


@pytest.mark.parametrize("system", ["crm", "wave"])
@pytest.mark.parametrize("entity", ["customer", "product", "order"])
def test_odd_bodies_read_in_bulk_as_the_exact_path_reads_them_or_are_held(tmp_path: Path, system: str, entity: str) -> None:
    """200 bodies with values swapped for odd ones at any depth, read through the fragments query (more than
    `SMALL`): every record the exact path (`exact_cells`) can read has exactly its cells; every other one is
    held (`read_canonical`'s `unreadable`: here, with no older version, left out). Nothing raises."""
    rnd = random.Random(f"{system}-{entity}")
    key = "Id" if system == "crm" else "id"
    samples = (CRM_BODIES if system == "crm" else WAVE_BODIES)[entity]
    bodies = [{**_mutated(rnd.choice(samples), rnd), key: f"R{i}"} for i in range(200)]  # type: ignore[dict-item]
    store = Store(tmp_path / "s.duckdb")
    name = dataset(system, entity)
    held: list[tuple[str, str, str]] = []
    with store.connect() as con:
        store.append_versions(con, name, [Version(f"{name}:R{i}", f"R{i}", str(i), False, None, None, b)
                                          for i, b in enumerate(bodies)], datetime(2026, 1, 1))
        frame = read_canonical(store, con, system, entity, unreadable=held)
    order = [c for c in frame.columns if c not in (f"{system}_id", "deleted", "modified")]
    unreadable: dict[int, UnreadableRecord] = {}
    exact = exact_cells([json.dumps(b) for b in bodies], system, entity, order, unreadable)
    got = {row[f"{system}_id"]: row for row in frame.iter_rows(named=True)}
    assert sorted(sid for _, sid, _ in held) == sorted(f"R{i}" for i in unreadable)
    assert set(got) == {f"R{i}" for i in range(200)} - {f"R{i}" for i in unreadable}
    assert len(got) > 100  # most odd bodies are still readable: the comparison below is not empty
    for i, cells in enumerate(exact):
        if i not in unreadable:
            assert {c: got[f"R{i}"][c] for c in order} == cells, bodies[i]
