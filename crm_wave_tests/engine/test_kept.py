"""`keep_open`: a long-lived worker keeps a file open between sessions, and gives it back when asked."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from crm_wave.store import Store
from crm_wave.store.connection import close_kept, keeping, kept


@pytest.fixture
def kept_60() -> Iterator[None]:
    with keeping(60):
        yield


def _wal(path: Path) -> int:
    wal = path.with_name(path.name + ".wal")
    return wal.stat().st_size if wal.exists() else 0


def _write(store: Store, step: str, mark: int) -> None:
    with store.session(), store.connect() as con:
        con.execute("INSERT INTO step_marks VALUES (?, 'x', ?)", [step, mark])


def test_the_next_session_reuses_the_kept_connection_without_a_checkpoint(tmp_path: Path, kept_60: None) -> None:
    path = tmp_path / "db.duckdb"
    _write(Store(path), "a", 1)
    assert kept(path)
    assert _wal(path) > 0  # not checkpointed: the edit is in the WAL only
    store = Store(path)  # a new Store of the same file, as the fleet makes per tenant-sync
    with store.session():
        assert store._session is not None
        with store.connect() as con:
            con.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")  # lives as long as the connection
    again = Store(path)
    with again.session(), again.connect() as con:
        assert con.execute("SELECT x FROM mine").fetchall() == [(1,)]  # the same connection
        assert con.execute("SELECT mark FROM step_marks WHERE step = 'a'").fetchall() == [(1,)]
    assert close_kept() == 1
    assert not kept(path)
    assert _wal(path) == 0  # closing checkpointed it
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT mark FROM step_marks WHERE step = 'a'").fetchall() == [(1,)]


def test_without_keep_open_a_session_closes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    _write(Store(path), "a", 1)
    assert not kept(path)
    assert _wal(path) == 0


def test_a_process_that_waits_gets_the_kept_file(tmp_path: Path, kept_60: None) -> None:
    path = tmp_path / "db.duckdb"
    _write(Store(path), "a", 1)
    assert kept(path)
    code = ("import sys; from pathlib import Path; from crm_wave.store import Store; s = Store(Path(sys.argv[1]))\n"
            "with s.connect() as con:\n"
            "    assert con.execute(\"SELECT mark FROM step_marks WHERE step = 'a'\").fetchall() == [(1,)]\n"
            "    con.execute(\"INSERT INTO step_marks VALUES ('proc', 'x', 2)\")\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], timeout=120, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert not kept(path)  # given back (and checkpointed) for the waiting process
    with Store(path).connect() as con:
        assert con.execute("SELECT mark FROM step_marks WHERE step = 'proc'").fetchall() == [(2,)]


def test_a_thread_with_another_store_takes_the_kept_connection_over(tmp_path: Path, kept_60: None) -> None:
    path = tmp_path / "db.duckdb"
    _write(Store(path), "a", 1)
    seen: list[object] = []

    def other() -> None:
        _write(Store(path), "b", 2)
        seen.append(kept(path))

    worker = threading.Thread(target=other)
    worker.start()
    worker.join(60)
    assert seen == [True]  # it used the kept connection and parked it again
    with Store(path).connect() as con:
        assert con.execute("SELECT step, mark FROM step_marks ORDER BY step").fetchall() == [("a", 1), ("b", 2)]


def test_an_idle_kept_file_is_closed(tmp_path: Path) -> None:
    with keeping(0.3):
        path = tmp_path / "db.duckdb"
        _write(Store(path), "a", 1)
        assert kept(path)
        deadline = time.monotonic() + 30
        while kept(path) or _wal(path):
            assert time.monotonic() < deadline, "the idle file was never closed and checkpointed"
            time.sleep(0.05)


def test_at_most_max_open_files_are_kept(tmp_path: Path) -> None:
    with keeping(60, max_open=2):
        paths = [tmp_path / f"db{i}.duckdb" for i in range(3)]
        for p in paths:
            _write(Store(p), "a", 1)
        assert [kept(p) for p in paths] == [False, True, True]  # the oldest was closed
        assert _wal(paths[0]) == 0
    assert not any(kept(p) for p in paths)  # turning it off closes the rest


def test_copying_the_file_closes_the_kept_connection_first(tmp_path: Path, kept_60: None) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    _write(store, "a", 1)
    with store.locked():
        assert not kept(path)
        assert _wal(path) == 0  # the file alone holds everything: a copy of it is whole
        copy = tmp_path / "copy.duckdb"
        copy.write_bytes(path.read_bytes())
    with duckdb.connect(str(copy), read_only=True) as con:
        assert con.execute("SELECT mark FROM step_marks WHERE step = 'a'").fetchall() == [(1,)]


def test_released_gives_the_file_back_even_when_keeping(tmp_path: Path, kept_60: None) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    with store.session():
        with store.connect() as con:
            con.execute("INSERT INTO step_marks VALUES ('a', 'x', 1)")
        with store.released():
            assert not kept(path)
            assert _wal(path) == 0  # closed for real: someone else may need it for minutes
    assert kept(path)


def test_a_snapshot_of_a_kept_file_keeps_it_open_and_holds_every_write(tmp_path: Path, kept_60: None) -> None:
    """A published snapshot (the copy layout) checkpoints the file through the kept connection instead of
    closing it: the connection is the same after it, and the snapshot holds the last write."""
    from crm_wave.analyst.snapshot import publish_now

    path = tmp_path / "db.duckdb"
    store = Store(path)
    _write(store, "a", 1)
    with store.session(), store.connect() as con:
        con.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")
    _write(store, "b", 2)
    assert _wal(path) > 0
    snapshot = publish_now(store)
    assert kept(path)  # not closed by the snapshot
    with store.session(), store.connect() as con:
        assert con.execute("SELECT x FROM mine").fetchall() == [(1,)]  # the same connection
    with duckdb.connect(str(snapshot), read_only=True) as con:
        assert con.execute("SELECT step, mark FROM step_marks ORDER BY step").fetchall() == [("a", 1), ("b", 2)]
    with store.session():
        with store.connect():
            with pytest.raises(RuntimeError, match="outside its transactions"):
                store.checkpoint()


def test_a_segments_snapshot_of_a_kept_file_keeps_it_open_within_its_memory_limit(
        tmp_path: Path, kept_60: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The segments layout writes what changed through the kept connection too (it closed the file before):
    the connection is the same after it, the snapshot holds the last write, and DuckDB's memory limit is
    what it was once the export is done."""
    from crm_wave.analyst.snapshot import publish_now

    monkeypatch.setenv("CRM_WAVE_SNAPSHOT_MODE", "segments")
    monkeypatch.setenv("CRM_WAVE_SNAPSHOT_MEMORY_MB", "300")
    path = tmp_path / "db.duckdb"
    store = Store(path)
    _write(store, "a", 1)
    publish_now(store)  # the first: from a copy (nothing to build on)
    with store.session(), store.connect() as con:
        con.execute("CREATE TEMP TABLE mine AS SELECT 1 AS x")
        ((limit,),) = con.execute("SELECT current_setting('memory_limit')").fetchall()
    _write(store, "b", 2)
    snapshot = publish_now(store)  # what changed since, from the live file
    assert kept(path)
    with store.session(), store.connect() as con:
        assert con.execute("SELECT x FROM mine").fetchall() == [(1,)]  # the same connection
        assert con.execute("SELECT current_setting('memory_limit')").fetchall() == [(limit,)]
    assert limit != "300.0 MiB"
    with duckdb.connect(str(snapshot), read_only=True) as con:
        assert con.execute("SELECT step, mark FROM step_marks ORDER BY step").fetchall() == [("a", 1), ("b", 2)]
