"""What publishing an analysts' snapshot costs, measured on the transform stage's store.

`publish_snapshot` (`crm_wave/analyst/snapshot.py`) is what every sync ends with. The
transform stage publishes three snapshots into one folder: the first after the full pass,
one more with nothing changed, and one after the incremental pass (1 % of the CRM customers
changed). For each: wall and CPU seconds of this process, the seconds the store's lock was
held, and the bytes it wrote: the sizes of the files under the snapshots folder that are new
or changed size since the previous publish (so a design that shares files between snapshots
is measured by what it adds). Retention is set so that nothing is pruned while measuring.

The layout measured is the one the environment selects (`Layout.from_env`: what a sync would
use); the other one is published too, into a folder of its own, and reported under `other`,
so every run shows the two side by side.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from crm_wave.analyst.snapshot import Layout, Retention, publish
from crm_wave.store.db import Store

__all__ = ["publish_timed", "KEEP_ALL", "ONE_PERCENT"]

#: The snapshots the transform stage publishes after a 1 % change of the CRM customers, in a row: the first, and one
#: after each pass that changes the same customers again. Over them a chain grows and is merged or compacted
#: (crm_wave/analyst/segments.py, `compact`), so the goal is judged on their mean.
ONE_PERCENT = ("1 % change", "1 % again", "1 % third", "1 % fourth")

#: Keep every snapshot while measuring (bytes are counted as files appear).
KEEP_ALL = Retention(keep=1_000, max_age=timedelta(days=3650), max_bytes=2**62)


def _sizes(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_size for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def _timed(store: Store, folder: Path, now: datetime, layout: Layout) -> dict[str, Any]:
    before = _sizes(folder)
    wall, cpu = time.perf_counter(), time.process_time()
    done = publish(store, folder, now, retention=KEEP_ALL, layout=layout)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    written = sum(size for p, size in _sizes(folder).items() if before.get(p) != size)
    return {"wall_s": wall, "cpu_s": cpu, "lock_s": done.lock_s, "bytes": written, "file_bytes": done.path.stat().st_size,
            "how": done.how, "layout": layout.mode}


def publish_timed(store: Store, folder: Path, now: datetime, layout: Layout | None = None) -> dict[str, Any]:
    """Publish one snapshot of `store` into `folder` (wall and CPU seconds, lock seconds, bytes written,
    snapshot file size, how it was written) and one with the other layout into a sibling folder (`other`)."""
    layout = layout or Layout.from_env(os.environ)
    segmented = layout.segmented(store.path)
    other = Layout(mode="copy") if segmented else Layout(mode="segments", max_rows=layout.max_rows)
    out = _timed(store, folder, now, layout)
    out["other"] = _timed(store, folder.with_name(f"{folder.name}-{other.mode}"), now, other)
    return out
