"""Analysts query the latest snapshot while a sync runs: no error, no lock, no half run."""

from __future__ import annotations

import threading
import time

import duckdb

from crm_wave.analyst.snapshot import latest_snapshot, publish_snapshot
from crm_wave.sync.collect import utcnow


FIRST, ALL = 20, 60  # sizes: a second sync long enough to be read during, not more


def test_snapshot_opens_read_only_while_a_sync_runs(rig, tmp_path):
    for i in range(FIRST):
        rig.crm_create("customers", {"Type": "organization", "Name": f"Snap {i}", "Email": f"s{i}@x.example"})
    rig.sync()
    snapshots = tmp_path / "snapshots"
    publish_snapshot(rig.store, snapshots, utcnow())
    for i in range(FIRST, ALL):
        rig.crm_create("customers", {"Type": "organization", "Name": f"Snap {i}", "Email": f"s{i}@x.example"})
    errors: list[BaseException] = []

    def sync() -> None:
        try:
            rig.sync()
            publish_snapshot(rig.store, snapshots, utcnow())
        except BaseException as exc:  # reported below
            errors.append(exc)

    worker = threading.Thread(target=sync)
    worker.start()
    seen, reads = set(), 0
    while worker.is_alive() or reads == 0:
        path = latest_snapshot(snapshots)
        assert path != rig.store.path
        with duckdb.connect(str(path), read_only=True) as con:
            golden, linked = con.execute(
                "SELECT (SELECT count(*) FROM golden_customers), "
                "(SELECT count(*) FROM record_links WHERE crm_id IS NOT NULL AND wave_id IS NOT NULL)").fetchall()[0]
        assert golden in (FIRST, ALL) and linked in (FIRST, ALL)  # one whole sync or the other, never half
        seen.add(golden)
        reads += 1
        time.sleep(0.05)  # a reader that never sleeps starves the sync thread of the GIL
    worker.join()
    assert not errors, errors
    with duckdb.connect(str(latest_snapshot(snapshots)), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM golden_customers").fetchall()[0][0] == ALL
    assert reads > 1 and FIRST in seen
