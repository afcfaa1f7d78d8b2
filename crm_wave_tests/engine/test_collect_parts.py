"""A large read is committed in parts (`collect.COMMIT_ROWS`), the cursor with the last: the same versions as
one transaction, and a crash between parts loses nothing and writes nothing twice."""

from __future__ import annotations

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
