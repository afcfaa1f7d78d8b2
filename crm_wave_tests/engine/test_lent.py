"""`Store.lent`: an API call inside a session keeps the file unless someone waits for it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from crm_wave.store import Store
from crm_wave.store.connection import _waited_for


def _session_con(store: Store) -> object:
    assert store._session is not None
    return store._session[1]


def test_lent_keeps_the_session_when_nobody_waits(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    with store.session():
        before = _session_con(store)
        with store.lent():
            assert _session_con(store) is before  # not closed and opened again
        with store.connect() as con:
            con.execute("INSERT INTO step_marks VALUES ('s', 'x', 1)")
        assert _session_con(store) is before


def test_lent_gives_the_file_to_a_thread_that_waits(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.duckdb")
    done = threading.Event()

    def other() -> None:
        with store.connect() as con:
            con.execute("INSERT INTO step_marks VALUES ('other', 'x', 1)")
        done.set()

    with store.session():
        before = _session_con(store)
        worker = threading.Thread(target=other)
        worker.start()
        deadline = time.monotonic() + 30
        while not _waited_for(store._want_path):
            assert time.monotonic() < deadline, "the other thread never showed it waits"
            time.sleep(0.01)
        with store.lent():  # the API call: the waiting thread gets the file meanwhile
            assert done.wait(30), "the waiting thread did not get the file during lent()"
        assert _session_con(store) is not before  # the session was given back and taken again
        with store.connect() as con:
            assert con.execute("SELECT mark FROM step_marks WHERE step = 'other'").fetchall() == [(1,)]
    worker.join(30)


def test_lent_gives_the_file_to_a_process_that_waits(tmp_path: Path) -> None:
    path = tmp_path / "db.duckdb"
    store = Store(path)
    code = ("import sys; from pathlib import Path; from crm_wave.store import Store; s = Store(Path(sys.argv[1]))\n"
            "with s.connect() as con: con.execute(\"INSERT INTO step_marks VALUES ('proc', 'x', 2)\")\n")
    with store.session():
        proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
        try:
            deadline = time.monotonic() + 60
            while not _waited_for(store._want_path):
                assert proc.poll() is None, "the process ended without waiting"
                assert time.monotonic() < deadline, "the process never showed it waits"
                time.sleep(0.02)
            with store.lent():
                assert proc.wait(60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        with store.connect() as con:
            assert con.execute("SELECT mark FROM step_marks WHERE step = 'proc'").fetchall() == [(2,)]


def test_lent_inside_a_transaction_keeps_it(tmp_path: Path) -> None:
    """Giving the file back would drop an open transaction: inside `connect()` lent does nothing."""
    store = Store(tmp_path / "db.duckdb")
    store._want_path.touch()
    with store.session():
        before = _session_con(store)
        with store.connect() as con:
            con.execute("INSERT INTO step_marks VALUES ('tx', 'x', 3)")
            with open(store._want_path) as sign:
                import fcntl

                fcntl.flock(sign, fcntl.LOCK_SH)  # as if someone waited
                with store.lent():
                    assert _session_con(store) is before
                fcntl.flock(sign, fcntl.LOCK_UN)
        with store.connect() as con:
            assert con.execute("SELECT mark FROM step_marks WHERE step = 'tx'").fetchall() == [(3,)]
