"""A large read is committed in parts (`collect.COMMIT_ROWS`), the cursor with the last: the same versions as
one transaction, and a crash between parts loses nothing and writes nothing twice."""

from __future__ import annotations

import threading

import pytest

from crm_wave.sync import collect as collect_module
from crm_wave.sync.collect import collect, utcnow
from crm_wave_tests.rig import Rig


def _versions(rig: Rig) -> list[tuple[str, int]]:
    with rig.store.connect() as con:
        return con.execute("SELECT _source_id, _seq FROM crm_customer ORDER BY _seq").fetchall()


def _cursor(rig: Rig) -> str | None:
    with rig.store.connect() as con:
        return rig.store.get_cursor(con, "crm_customer")[0]


def _customers(rig: Rig, n: int) -> list[str]:
    return [rig.crm_create("customers", {"Type": "organization", "Name": f"Parts {i} AS", "Email": f"p{i}@parts.example",
                                         "Country": "NO", "Currency": "NOK"})["Id"] for i in range(n)]


def test_a_read_larger_than_a_part_writes_every_version_once(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _customers(rig, 5)
    monkeypatch.setattr(collect_module, "COMMIT_ROWS", 2)
    result = collect(rig.store, "crm", "customer", rig.crm, utcnow(), full=True)
    assert result.written == 5
    versions = _versions(rig)
    assert sorted(i for i, _ in versions) == sorted(ids) and [s for _, s in versions] == [1, 2, 3, 4, 5]
    assert _cursor(rig) is not None


def test_a_crash_between_parts_keeps_the_cursor_and_the_next_read_writes_the_rest(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    ids = _customers(rig, 5)
    monkeypatch.setattr(collect_module, "COMMIT_ROWS", 2)
    real = rig.store.append_frame
    calls = []

    def crash_on_second(con, name, frame, now):
        calls.append(frame.height)
        if len(calls) == 2:
            raise RuntimeError("killed between parts")
        return real(con, name, frame, now)

    monkeypatch.setattr(rig.store, "append_frame", crash_on_second)
    with pytest.raises(RuntimeError, match="killed between parts"):
        collect(rig.store, "crm", "customer", rig.crm, utcnow(), full=True)
    assert len(_versions(rig)) == 2  # the first part is committed
    assert _cursor(rig) is None  # the cursor did not move: the next read covers the same records
    monkeypatch.setattr(rig.store, "append_frame", real)
    again = collect(rig.store, "crm", "customer", rig.crm, utcnow())
    assert again.written == 3
    versions = _versions(rig)
    assert sorted(i for i, _ in versions) == sorted(ids)  # each once: nothing lost, nothing twice
    assert _cursor(rig) is not None


def test_a_full_read_hands_its_parts_to_a_writer_thread_as_it_reads(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full read's parts are appended on a thread of their own while the read goes on (`collect._Writer`),
    in the order read; the rest, with the cursor, on the caller's thread after the read."""
    ids = _customers(rig, 5)
    monkeypatch.setattr(collect_module, "COMMIT_ROWS", 2)
    real = rig.store.append_frame
    calls: list[tuple[bool, list[str]]] = []

    def recorded(con, name, frame, now, **kwargs):
        calls.append((threading.current_thread() is threading.main_thread(), frame["_source_id"].to_list()))
        return real(con, name, frame, now, **kwargs)

    monkeypatch.setattr(rig.store, "append_frame", recorded)
    result = collect(rig.store, "crm", "customer", rig.crm, utcnow(), full=True)
    assert result.written == 5 and result.read == 5
    assert [main for main, _ in calls] == [False, False, True]
    read = [i for _, part in calls for i in part]
    assert sorted(read) == sorted(ids) and [len(part) for _, part in calls] == [2, 2, 1]
    assert [i for i, _ in _versions(rig)] == read  # the versions numbered in the order read
    assert _cursor(rig) is not None
