"""The full rebuild's fast paths give what the general paths give: the dataset read in `_seq` parts,
and the plain inserts of links and agreed values into a table that has none of their rows."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import crm_wave.sync.global_step as global_step
from crm_wave.store.db import Store, Version
from crm_wave.sync.names import dataset
from crm_wave_tests.engine.test_vectorised import CRM_BODIES, WAVE_BODIES

T0 = datetime(2026, 1, 1)


def _versions(system: str, bodies: list[dict], tag: str, deleted: frozenset[str] = frozenset(),
              entity: str = "customer") -> list[Version]:
    name, key = dataset(system, entity), ("Id" if system == "crm" else "id")
    return [Version(f"{name}:{b[key]}", b[key], f"{tag}{i}", b[key] in deleted, None, None,
                    None if b[key] in deleted else b) for i, b in enumerate(bodies)]


@pytest.mark.parametrize("system", ["crm", "wave"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 100])
def test_a_dataset_read_in_seq_parts_is_the_dataset_read_whole(tmp_path: Path, monkeypatch, system: str, chunk: int):
    bodies = (CRM_BODIES if system == "crm" else WAVE_BODIES)["customer"]
    key = "Id" if system == "crm" else "id"
    name = dataset(system, "customer")
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        store.append_versions(con, name, _versions(system, bodies, "a"), T0)
        # Newer versions of some records land in later parts than their first ones; one is deleted.
        changed = [{**b, "Name": f"renamed {b[key]}"} for b in bodies[::2]]
        store.append_versions(con, name, _versions(system, changed, "b", frozenset([bodies[0][key]])), T0)
        top = store.max_seq(con, name)
        whole = global_step._load(store, con, system, "customer", None, {}, held=[])
        monkeypatch.setattr(global_step, "CHUNK", chunk)
        monkeypatch.setattr(global_step, "PART", chunk)
        monkeypatch.setattr(global_step.canonical_paths, "SMALL", 0)  # every part read by its current `_seq`
        parts = global_step._load_whole(store, con, system, "customer", top, {}, held=[])
    assert top > len(bodies)
    assert parts.height == len(bodies)
    col = f"{system}_id"
    assert_frame_equal(parts.sort(col), whole.sort(col))
    assert parts.filter(pl.col(col) == bodies[0][key])["deleted"].to_list() == [True]


def _table(store: Store, sql: str) -> pl.DataFrame:
    with store.connect() as con:
        return con.execute(sql).pl()


def _written(store: Store, entity: str) -> list[pl.DataFrame]:
    """What a global step of `entity` wrote: its golden table, links and agreed values (less their times)."""
    return [_table(store, f"SELECT * {exclude} FROM {table} WHERE {where} ORDER BY ALL")
            for table, exclude, where in ((f"global_{entity}", "", "true"),
                                          ("links", "EXCLUDE (linked_at)", f"entity = '{entity}'"),
                                          ("agreed", "EXCLUDE (updated_at)", f"entity = '{entity}'"))]


def test_fresh_inserts_write_what_upserts_write_into_empty_tables(tmp_path: Path):
    links = pl.DataFrame({"global_id": ["g1", "g2", "g3", "g1"], "crm_id": ["c1", None, "c3", None],
                          "wave_id": [None, "w2", "w3", "w1"], "how": ["origin:crm", "origin:wave", "merge:Email=Email", "x"]})
    agreed = pl.DataFrame({"global_id": ["g1", "g2", "g3"], "Name": ["A", None, "C"], "Email": [None, None, "c@x.no"]})
    got = {}
    for fresh in (False, True):
        store = Store(tmp_path / f"{fresh}.duckdb")
        with store.connect() as con:
            store.upsert_links(con, "customer", links, T0, writer="global", log=False, fresh=fresh)
            store.upsert_agreed(con, "customer", agreed, T0, log=False, fresh=fresh)
        got[fresh] = (_table(store, "SELECT * FROM links ORDER BY ALL"),
                      _table(store, 'SELECT entity, global_id, "values"::VARCHAR AS v, updated_at FROM agreed ORDER BY ALL'))
    assert got[True][0].height == 3 and got[True][0].filter(pl.col("global_id") == "g1")["wave_id"].to_list() == ["w1"]
    # An agreed null is stored as given (it was dropped, as no key, until session 33) and reads back as null.
    assert got[True][1].filter(pl.col("global_id") == "g2")["v"].to_list() == ['{"Name":null,"Email":null}']
    store = Store(tmp_path / "True.duckdb")
    with store.connect() as con:
        read = store.read_agreed_frame(con, "customer", ["Name", "Email"]).sort("global_id")
    assert read.rows() == [("g1", "A", None), ("g2", None, None), ("g3", "C", "c@x.no")]
    for fast, general in zip(got[True], got[False]):
        assert_frame_equal(fast, general)


#: A field each side's test bodies of an entity carry, renamed in the newer versions.
_RENAMED = {"customer": ("Name", "name"), "order": ("OrderNumber", "invoiceNumber")}


@pytest.mark.parametrize("entity", ["customer", "order"])
def test_a_rebuild_read_once_writes_what_the_two_reads_write(tmp_path: Path, monkeypatch, entity: str):
    """Read whole, spilled (`Spill`: read once, held on disk) or read twice (the link fields, then each part)."""
    got, keep = {}, global_step.Spill.keep
    for once in ("whole", "spill", "twice"):
        store = Store(tmp_path / f"{once}.duckdb")
        with store.connect() as con:
            for system, bodies in (("crm", CRM_BODIES), ("wave", WAVE_BODIES)):
                for e in ("customer", "product", "order"):  # an order's references: its customer and products
                    store.append_versions(con, dataset(system, e), _versions(system, bodies[e], "a", entity=e), T0)
                # Newer versions far from the first ones (a part's `_seq` range, `within`), one record deleted.
                key = "Id" if system == "crm" else "id"
                field = _RENAMED[entity][system == "wave"]
                changed = [{**b, field: f"renamed {b[key]}"} for b in bodies[entity][1::2]]
                store.append_versions(con, dataset(system, entity),
                                      _versions(system, changed, "b", frozenset([bodies[entity][1][key]]), entity=entity), T0)
        if entity == "order":
            for dep in ("customer", "product"):
                global_step.build_global(store, dep, T0, full=True)
        monkeypatch.setattr(global_step, "CHUNK", 3)  # parts of 3 versions: several of each kind
        monkeypatch.setattr(global_step, "PART", 3)
        monkeypatch.setattr(global_step, "READ_ONCE_PARTS", 100 if once == "whole" else 0)
        monkeypatch.setattr(global_step, "SPILL", once == "spill")
        monkeypatch.setattr(global_step.canonical_paths, "SMALL", 0)  # every part's read is the large one (`within`)
        calls, spilled = [], []
        monkeypatch.setattr(global_step, "_load_whole", lambda *a, f=global_step._load_whole, **k: calls.append(a) or f(*a, **k))
        monkeypatch.setattr(global_step.Spill, "keep", lambda self, *a: spilled.append(self.folder) or keep(self, *a))
        result = global_step.build_global(store, entity, T0, full=True)
        assert bool(calls) is (once == "whole")
        assert bool(spilled) is (once == "spill")
        assert not any(folder.exists() for folder in spilled)  # the spill is deleted when the step ends
        got[once] = (result, *_written(store, entity))
    assert got["whole"][1].height >= len(CRM_BODIES[entity])
    for other in ("spill", "twice"):
        assert got["whole"][0] == got[other][0]
        for fast, general in zip(got["whole"][1:], got[other][1:]):
            assert_frame_equal(fast, general)


@pytest.mark.parametrize("spill", [True, False])
def test_a_rebuild_reads_parts_ahead_and_an_error_in_a_read_ahead_is_raised(tmp_path: Path, monkeypatch, spill: bool):
    """A rebuild in parts reads and merges the next part on a thread of its own (`_ReadAhead`) and writes what
    doing each part in turn writes; a part ahead that fails fails the step with its own error, and the next runs."""
    import threading

    monkeypatch.setattr(global_step, "CHUNK", 3)
    monkeypatch.setattr(global_step, "PART", 3)  # 7 + 5 customers, some linked: at least 3 parts
    monkeypatch.setattr(global_step, "READ_ONCE_PARTS", 0)  # no whole read: every part is read on its own
    monkeypatch.setattr(global_step, "SPILL", spill)
    monkeypatch.setattr(global_step.canonical_paths, "SMALL", 0)
    merge, threads, calls, fail = global_step._merge, [], [], [False]

    def counted(*a, **k):
        threads.append(threading.current_thread().name)
        calls.append(a[1])
        # The second merge on the read-ahead thread (a first rebuild merges its first part there as well, while
        # it writes its links), while the part before it is written.
        if fail[0] and [t.startswith("read-ahead") for t in threads].count(True) == 2:
            raise RuntimeError("read ahead failed")
        return merge(*a, **k)

    monkeypatch.setattr(global_step, "_merge", counted)
    got = {}
    for ahead in (True, False):
        monkeypatch.setattr(global_step, "READ_AHEAD", ahead)
        store = Store(tmp_path / f"{ahead}.duckdb")
        with store.connect() as con:
            for system, bodies in (("crm", CRM_BODIES), ("wave", WAVE_BODIES)):
                store.append_versions(con, dataset(system, "customer"), _versions(system, bodies["customer"], "a"), T0)
        if ahead:
            fail[0] = True
            with pytest.raises(RuntimeError, match="read ahead failed"):
                global_step.build_global(store, "customer", T0, full=True)
            fail[0] = False
        threads.clear()
        calls.clear()
        global_step.build_global(store, "customer", T0, full=True)
        assert any(t.startswith("read-ahead") for t in threads) is ahead
        assert len(calls) >= 3
        got[ahead] = _written(store, "customer")
    assert got[True][0].height > 6
    for with_ahead, in_turn in zip(got[True], got[False]):
        assert_frame_equal(with_ahead, in_turn)


@pytest.mark.parametrize("layout", ["spill", "read twice", "one part"])
def test_a_first_rebuild_writes_its_links_while_its_first_part_merges(tmp_path: Path, monkeypatch, layout: str):
    """A rebuild that finds no link (a first pass) takes the links it made as they are, not read back, and writes
    them while its first part is read and merged ahead, in parts or in one (every record read once, held); a
    rebuild over those links writes the same."""
    import threading

    if layout != "one part":
        monkeypatch.setattr(global_step, "CHUNK", 3)
        monkeypatch.setattr(global_step, "PART", 3)
        monkeypatch.setattr(global_step, "READ_ONCE_PARTS", 0)
        monkeypatch.setattr(global_step, "SPILL", layout == "spill")
        monkeypatch.setattr(global_step.canonical_paths, "SMALL", 0)
    parts = []
    monkeypatch.setattr(global_step, "_ReadAhead", lambda read, n, cls=global_step._ReadAhead: parts.append(n) or cls(read, n))
    merge, upsert, events = global_step._merge, Store.upsert_links, []
    monkeypatch.setattr(global_step, "_merge", lambda *a, **k: events.append(("merge", threading.current_thread().name))
                        or merge(*a, **k))
    monkeypatch.setattr(Store, "upsert_links", lambda *a, **k: events.append(("links", threading.current_thread().name))
                        or upsert(*a, **k))
    read_back, asked = [], []
    monkeypatch.setattr(global_step, "all_links", lambda *a, f=global_step.all_links: read_back.append(a[2]) or f(*a))
    monkeypatch.setattr(Store, "read_agreed_frame", lambda self, con, e, fields, ids, f=Store.read_agreed_frame:
                        asked.append(ids.len()) or f(self, con, e, fields, ids))
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        for system, bodies in (("crm", CRM_BODIES), ("wave", WAVE_BODIES)):
            store.append_versions(con, dataset(system, "customer"), _versions(system, bodies["customer"], "a"), T0)
    first = global_step.build_global(store, "customer", T0, full=True)
    assert read_back == ["customer"]  # the links linking starts from (none), not the ones it wrote
    assert asked and not any(asked)  # no agreed value of the entity before: none asked for
    assert [t for e, t in events if e == "merge"][0].startswith("read-ahead")  # the first part, ahead ...
    assert ("links", "MainThread") in events  # ... while the step's own thread writes the links
    assert parts == [1] if layout == "one part" else parts[0] > 1
    written = _written(store, "customer")
    assert written[1].height == first.new_links > 3
    events.clear()
    read_back.clear()
    asked.clear()
    again = global_step.build_global(store, "customer", T0, full=True)
    assert read_back == ["customer", "customer"]  # links there: read, and read back after the upsert
    assert again.new_links == 0
    assert sum(asked) == written[1].height  # each part's agreed values read
    for a, b in zip(_written(store, "customer"), written):
        assert_frame_equal(a, b)


def test_a_first_rebuild_merges_over_agreed_values_an_earlier_life_left(tmp_path: Path):
    """Links gone but agreed values kept (the global ids are the records' own, so a first rebuild makes the same
    ones again): the first rebuild reads them as the base, and upserts over them, where a plain insert failed."""
    store = Store(tmp_path / "s.duckdb")
    with store.connect() as con:
        for system, bodies in (("crm", CRM_BODIES), ("wave", WAVE_BODIES)):
            store.append_versions(con, dataset(system, "customer"), _versions(system, bodies["customer"], "a"), T0)
    global_step.build_global(store, "customer", T0, full=True)
    with store.connect() as con:
        agreed = con.execute("SELECT global_id, \"values\"::VARCHAR FROM agreed ORDER BY ALL").fetchall()
        gid = agreed[0][0]
        con.execute("DELETE FROM links")
        con.execute("UPDATE agreed SET \"values\" = json_merge_patch(\"values\", '{\"Extra\": \"kept\"}') "
                    "WHERE global_id = ?", [gid])
    global_step.build_global(store, "customer", T0, full=True)
    with store.connect() as con:
        after = dict(con.execute("SELECT global_id, \"values\"::VARCHAR FROM agreed ORDER BY ALL").fetchall())
    assert len(after) == len(agreed)
    assert '"Extra":"kept"' in after[gid]  # merged over (patched), not inserted anew
