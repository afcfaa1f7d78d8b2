"""Snapshots: copies of the live store between transactions, published atomically, read-only."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm_wave.analyst import latest_snapshot, list_snapshots, publish_snapshot
from crm_wave.store.db import Store, Version

T0 = datetime(2026, 3, 1, 9, 0, 0)


def _customers(system: str, ids: list[str]) -> list[Version]:
    return [Version(f"{system}-customer:{i}", i, f"h-{i}", False, None, None, {"Id": i, "Name": f"Customer {i}"}) for i in ids]


def _count(path: Path, table: str) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_publish_names_by_utc_time_leaves_no_temp_files_and_keeps_the_newest(tmp_path: Path) -> None:
    store = Store(tmp_path / "data" / "crm_wave.duckdb")
    snaps = tmp_path / "snaps"
    oslo = timezone(timedelta(hours=1))
    first = publish_snapshot(store, snaps, datetime(2026, 3, 1, 10, 0, 0, 123456, tzinfo=oslo), keep=3)
    assert first.name == "crm_wave-20260301T090000.123456Z.duckdb"
    for minute in range(1, 5):
        publish_snapshot(store, snaps, T0 + timedelta(minutes=minute), keep=3)
    assert [p.name for p in list_snapshots(snaps)] == [f"crm_wave-20260301T09{m:02d}00.000000Z.duckdb" for m in (2, 3, 4)]
    # No temp or WAL files left; `segments` holds the folder's lock (and the golden tables' parts, had the store any).
    assert sorted(p.name for p in snaps.iterdir()) == [p.name for p in list_snapshots(snaps)] + ["segments"]
    assert sorted(p.name for p in store.path.parent.iterdir()) == ["crm_wave.duckdb", "crm_wave.duckdb.lock"]


def test_a_snapshot_is_a_frozen_copy_and_the_live_file_gets_no_views(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.append_versions(con, "crm_customer", _customers("crm", ["C1", "C2"]), T0)
    snap1 = publish_snapshot(store, tmp_path / "snaps", T0)
    with store.connect() as con:
        store.append_versions(con, "crm_customer", _customers("crm", ["C3"]), T0 + timedelta(minutes=1))
    snap2 = publish_snapshot(store, tmp_path / "snaps", T0 + timedelta(minutes=1))
    assert (_count(snap1, "crm_customers_now"), _count(snap2, "crm_customers_now")) == (2, 3)
    with store.connect() as con:
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'crm_customers_now'").fetchone() == (0,)


def test_latest_snapshot_picks_the_newest_or_the_one_valid_at_a_time(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    snaps = tmp_path / "snaps"
    with pytest.raises(FileNotFoundError, match="no snapshot in"):
        latest_snapshot(snaps)
    t1, t2, t3 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    p2 = publish_snapshot(store, snaps, t2)
    p1 = publish_snapshot(store, snaps, t1)  # published out of order: the name decides, not the mtime
    p3 = publish_snapshot(store, snaps, t3)
    assert latest_snapshot(snaps) == p3
    assert latest_snapshot(snaps, at=t2) == p2
    assert latest_snapshot(snaps, at=t2 + timedelta(minutes=59)) == p2
    assert latest_snapshot(snaps, at=t2 - timedelta(microseconds=1)) == p1
    assert latest_snapshot(snaps, at=(t1 + timedelta(minutes=1)).replace(tzinfo=UTC).astimezone(timezone(timedelta(hours=-5)))) == p1
    assert latest_snapshot(snaps, at=t3 + timedelta(days=365)) == p3
    with pytest.raises(FileNotFoundError, match="at or before 2026-03-01T08:59:59Z; the oldest is from 2026-03-01T09:00:00Z"):
        latest_snapshot(snaps, at=t1 - timedelta(seconds=1))


def test_an_open_snapshot_survives_new_publishes_and_pruning(tmp_path: Path) -> None:
    store = Store(tmp_path / "crm_wave.duckdb")
    with store.connect() as con:
        store.append_versions(con, "crm_customer", _customers("crm", ["C1"]), T0)
    snap = publish_snapshot(store, tmp_path / "snaps", T0, keep=1)
    with duckdb.connect(str(snap), read_only=True) as reader:
        with store.connect() as con:
            store.append_versions(con, "crm_customer", _customers("crm", ["C2"]), T0)
        newer = publish_snapshot(store, tmp_path / "snaps", T0 + timedelta(seconds=1), keep=1)
        assert not snap.exists()  # pruned while open
        assert reader.execute("SELECT count(*) FROM crm_customers_now").fetchone() == (1,)
    assert _count(newer, "crm_customers_now") == 2


def test_readers_of_snapshots_never_block_runs_nor_see_half_a_transaction(tmp_path: Path) -> None:
    """Writer, publisher and reader threads at once; every write puts N rows into two tables in one transaction."""
    store = Store(tmp_path / "crm_wave.duckdb")
    snaps = tmp_path / "snaps"
    with store.connect() as con:
        store.replace_table(con, "batch_marker", pl.DataFrame({"batch": [-1], "rows": [0]}))
    publish_snapshot(store, snaps, T0)
    stop = threading.Event()
    errors: list[BaseException] = []
    writes: list[int] = []
    published: list[Path] = []
    seen: list[tuple[int, int, int]] = []

    def guard(fn):
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                stop.set()
        return run

    @guard
    def writer() -> None:
        i = 0
        while not stop.is_set():
            ids = [f"B{i}-{k}" for k in range(3)]
            with store.connect() as con:
                store.append_versions(con, "crm_customer", _customers("crm", ids), T0 + timedelta(seconds=i))
                time.sleep(0.01)  # the transaction is half done here
                store.append_versions(con, "wave_customer", _customers("wave", ids), T0 + timedelta(seconds=i))
                store.replace_table(con, "batch_marker", pl.DataFrame({"batch": [i], "rows": [3 * (i + 1)]}))
            writes.append(i)
            i += 1
            time.sleep(0.005)  # let the publisher at the lock (threading.RLock is not fair)

    @guard
    def publisher() -> None:
        n = 1
        while not stop.is_set():
            published.append(publish_snapshot(store, snaps, T0 + timedelta(milliseconds=n), keep=10))
            n += 1

    @guard
    def reader() -> None:
        while not stop.is_set():
            path = latest_snapshot(snaps)
            with duckdb.connect(str(path), read_only=True) as con:
                crm, wave, marker = con.execute(
                    "SELECT (SELECT count(*) FROM crm_customers_now), (SELECT count(*) FROM wave_customers_now), "
                    "(SELECT max(rows) FROM batch_marker)"
                ).fetchone()
                seen.append((crm, wave, marker))
                if not crm == wave == marker:
                    raise AssertionError(f"{path.name} holds half a transaction: {crm} crm, {wave} wave, marker {marker}")

    threads = [threading.Thread(target=t, daemon=True) for t in (writer, publisher, reader)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60  # ends as soon as enough happened; a loaded machine needs longer
    while time.monotonic() < deadline and not stop.is_set() and (
            len(published) < 6 or len(seen) < 10 or len({s[0] for s in seen}) < 3):
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(writes) >= 5 and len(published) >= 5 and len(seen) >= 5
    assert len({s[0] for s in seen}) >= 3  # the reader saw the live store move on, snapshot by snapshot
    final = publish_snapshot(store, snaps, T0 + timedelta(hours=1))
    assert _count(final, "crm_customers_now") == _count(final, "wave_customers_now") == 3 * len(writes)
