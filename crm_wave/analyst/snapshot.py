"""Snapshots of the sync's DuckDB file for analysts, taken between transactions.

The live file is never the one analysts open. Two layouts (`Layout`, `CRM_WAVE_SNAPSHOT_MODE`):

- `copy`: the store's exclusive lock is held for a CHECKPOINT and a copy of the whole file, and
  for hard links of the golden tables' Parquet parts into the segments folder (the copy's views read
  those, `snapshot_files` lists them: crm_wave/store/files.py); the analyst views are added to the
  copy outside the lock.
- `segments` (`segments.py`): the lock is held while one transaction finds what changed since
  the newest snapshot (new dataset versions; the rows the store's row-write log names, or, where
  it cannot say, a hash of every row) and writes only that, as Parquet segments shared between
  snapshots (on the session's own connection, `Connection.bare`: a file kept open stays open; DuckDB
  within `Layout.memory`). Outside the lock a small DuckDB file of views over the segments is built. When
  there is no segment snapshot to build on, or more rows changed than `Layout.max_rows`, the file
  is copied under the lock as in `copy` and the segments are written from the copy outside it.
  `auto` uses `copy` for files under `Layout.copy_below` bytes, where a copy holds the lock for
  less. The default is `auto`.

Either way the snapshot is renamed into place atomically: a reader sees a whole snapshot or none,
and one publish or prune of a folder runs at a time (`segments.dir_lock`).
Snapshots are named by the UTC time they were taken, `crm_wave-YYYYMMDDTHHMMSS.ffffffZ.duckdb`,
and are opened read-only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from crm_wave.analyst import segments
from crm_wave.analyst.views import create_views
from crm_wave.store import files, writes
from crm_wave.store.connection import commit
from crm_wave.store.db import Store

__all__ = ["SNAPSHOT_PREFIX", "Layout", "Published", "Retention", "list_snapshots", "prune_snapshots", "latest_snapshot", "publish",
           "publish_now", "publish_snapshot", "snapshot_name", "snapshot_time"]

SNAPSHOT_PREFIX = "crm_wave-"
_STAMP = "%Y%m%dT%H%M%S.%fZ"
_NAME = re.compile(r"^crm_wave-(\d{8}T\d{6}\.\d{6}Z)\.duckdb$")


def _utc(ts: datetime) -> datetime:
    """`ts` as a naive UTC time (a naive `ts` is taken to be UTC already)."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def snapshot_name(taken_at: datetime) -> str:
    """File name of a snapshot taken at `taken_at`."""
    return f"{SNAPSHOT_PREFIX}{_utc(taken_at).strftime(_STAMP)}.duckdb"


def snapshot_time(path: Path) -> datetime | None:
    """When the snapshot at `path` was taken (naive UTC), or None if `path` is not a snapshot name."""
    m = _NAME.match(Path(path).name)
    return datetime.strptime(m.group(1), _STAMP) if m else None


def list_snapshots(snapshots_dir: Path) -> list[Path]:
    """Published snapshots in `snapshots_dir`, oldest first (temporary files are never listed)."""
    snapshots_dir = Path(snapshots_dir)
    if not snapshots_dir.is_dir():
        return []
    found = [(t, p) for p in snapshots_dir.iterdir() if (t := snapshot_time(p)) is not None and p.is_file()]
    return [p for _, p in sorted(found)]


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@dataclass(frozen=True)
class Retention:
    """Which snapshots are kept: at most `keep`, none older than `max_age` and together at most
    `max_bytes` (the oldest go first; a segment two snapshots share counts once); the newest is
    always kept, whatever its age or size. A segment no kept snapshot reads is deleted `grace`
    after it was first found unused, so a query on a just-pruned snapshot still finishes.

    Defaults: 48 snapshots, 24 hours, 256 MB, 10 minutes; set with `CRM_WAVE_SNAPSHOT_KEEP`,
    `CRM_WAVE_SNAPSHOT_MAX_AGE_HOURS`, `CRM_WAVE_SNAPSHOT_MAX_MB` and `CRM_WAVE_SNAPSHOT_GRACE_MINUTES`."""

    keep: int = 48
    max_age: timedelta = timedelta(hours=24)
    max_bytes: int = 256 * 2**20
    grace: timedelta = timedelta(minutes=10)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Retention:
        """The retention the environment sets (defaults for unset variables); ConfigError names a bad one."""
        return cls(keep=max(1, int(_number(environ, "CRM_WAVE_SNAPSHOT_KEEP", cls.keep))),
                   max_age=timedelta(hours=_number(environ, "CRM_WAVE_SNAPSHOT_MAX_AGE_HOURS", cls.max_age.total_seconds() / 3600)),
                   max_bytes=int(_number(environ, "CRM_WAVE_SNAPSHOT_MAX_MB", cls.max_bytes / 2**20) * 2**20),
                   grace=timedelta(minutes=_number(environ, "CRM_WAVE_SNAPSHOT_GRACE_MINUTES", cls.grace.total_seconds() / 60,
                                                   zero=True)))


def _number(environ: Mapping[str, str], name: str, default: float, *, zero: bool = False) -> float:
    from crm_wave.config.settings import ConfigError

    text = (environ.get(name) or "").strip()
    try:
        value = float(text) if text else default
    except ValueError:
        value = -1
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(f"{name}={text!r} is not a {'non-negative' if zero else 'positive'} number; set it to one or unset it")
    return value


MODES = ("auto", "copy", "segments")


@dataclass(frozen=True)
class Layout:
    """How a snapshot is written: `mode` `copy` (the whole file), `segments` (what changed, as Parquet
    segments the snapshots share: `segments.py`) or `auto` (`copy` for a live file under `copy_below`
    bytes, else `segments`). `max_rows`: the most rows a segment publish writes under the store's
    lock; past it the file is copied under the lock and the segments written from the copy.

    `memory`: DuckDB's memory limit on the connections that write segments (what it holds beyond that
    spills to a temporary file). Unset, DuckDB takes up to 80 % of the machine's memory, and a first
    snapshot of a store of a million records a side peaked at 3.5 GB of the sync's process; with 2 GB,
    2.4 GB for the same wall time (docs/benchmarks.md, "Session 14").

    Defaults: `auto`, 64 MB, 200,000 rows, 2048 MB; set with `CRM_WAVE_SNAPSHOT_MODE`,
    `CRM_WAVE_SNAPSHOT_COPY_BELOW_MB` and `CRM_WAVE_SNAPSHOT_MEMORY_MB` (docs/benchmarks.md has the figures
    behind them: at 1M records segments hold the lock for 0.03-0.04 s after no change and 0.16-0.20 s after
    a 1 % change, a copy for 0.4-0.5 s from a warm page cache and 1-3 s and more from a cold disk; at 11 MB
    a copy holds it for 0.05-0.2 s, segments for 0.15-0.5 s)."""

    mode: str = "auto"
    copy_below: int = 64 * 2**20
    max_rows: int = 200_000
    memory: int = 2048 * 2**20

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Layout:
        """The layout the environment sets (defaults for unset variables); ConfigError names a bad one."""
        from crm_wave.config.settings import ConfigError

        mode = (environ.get("CRM_WAVE_SNAPSHOT_MODE") or "").strip().lower() or cls.mode
        if mode not in MODES:
            raise ConfigError(f"CRM_WAVE_SNAPSHOT_MODE={mode!r} is not one of {', '.join(MODES)}; set one or unset it")
        below = _number(environ, "CRM_WAVE_SNAPSHOT_COPY_BELOW_MB", cls.copy_below / 2**20, zero=True)
        memory = _number(environ, "CRM_WAVE_SNAPSHOT_MEMORY_MB", cls.memory / 2**20)
        return cls(mode=mode, copy_below=int(below * 2**20), memory=int(memory * 2**20))

    def memory_limit(self) -> str:
        """`memory` as DuckDB's `memory_limit` setting takes it (whole MiB)."""
        return f"{max(1, self.memory // 2**20)}MiB"

    def connect(self, path: Path) -> duckdb.DuckDBPyConnection:
        """A connection that writes segments from the file at `path` (a copy of the live one), within `memory`."""
        return duckdb.connect(str(path), config={"memory_limit": self.memory_limit()})

    def segmented(self, live: Path) -> bool:
        """Whether a snapshot of the file at `live` is written as segments."""
        if self.mode != "auto":
            return self.mode == "segments"
        try:
            return live.stat().st_size >= self.copy_below
        except FileNotFoundError:
            return False


@dataclass(frozen=True)
class Published:
    """One publish: the snapshot, how it was written (`copy`, `segments`, `segments from a copy`),
    the seconds the store's lock was held, the segments written, and how each table's changes were
    found (`segments.Export.read`: `seq`, `log: none`, `log: rows`, `log: base` or `hashed`); `updated`: the snapshot
    file is the one before, copied, with the views of what changed replaced (`segments.write_snapshot`)."""

    path: Path
    how: str
    lock_s: float
    written: tuple[segments.Segment, ...] = ()
    read: tuple[tuple[str, str], ...] = ()
    updated: bool = False


def _prune(snapshots_dir: Path, now: datetime, retention: Retention) -> list[Path]:
    snaps = list_snapshots(snapshots_dir)
    if not snaps:
        return []
    newest, older = snaps[-1], snaps[:-1]
    limit = _utc(now) - retention.max_age
    kept = [p for p in older if (snapshot_time(p) or limit) >= limit][-(retention.keep - 1):] if retention.keep > 1 else []
    counted: set[str] = set()

    def size(p: Path) -> int:
        return segments.snapshot_bytes(p, counted)

    total = size(newest)
    within: list[Path] = []
    for p in reversed(kept):  # newest first, until the size is spent
        total += size(p)
        if total > retention.max_bytes:
            break
        within.append(p)
    removed = [p for p in older if p not in within]
    for p in removed:
        _remove(p)
    # A publish killed before it could clean up: under the folder's lock no other is writing one.
    for leftover in snapshots_dir.glob(f".{SNAPSHOT_PREFIX}*.tmp.duckdb*"):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    segments.collect_garbage(snapshots_dir, [newest, *within], retention.grace.total_seconds())
    return removed


def prune_snapshots(snapshots_dir: Path, now: datetime, retention: Retention) -> list[Path]:
    """Remove the snapshots `retention` does not keep (as of `now`), then the segments none of the
    kept ones reads (after `retention.grace`); return the snapshots removed, oldest first."""
    snapshots_dir = Path(snapshots_dir)
    if not snapshots_dir.is_dir():
        return []
    with segments.dir_lock(snapshots_dir):
        return _prune(snapshots_dir, now, retention)


def publish_snapshot(store: Store, snapshots_dir: Path, now: datetime, *, keep: int = 48,
                     retention: Retention | None = None, layout: Layout | None = None) -> Path:
    """Publish a snapshot of the live database with the analyst views; then prune by `retention`
    (default: the `keep` newest, within the default age and size). `layout`: how (default `Layout()`).

    Runs never wait on analysts: the store's lock is held only for the copy, or for reading what
    changed (`Layout`)."""
    return publish(store, snapshots_dir, now, keep=keep, retention=retention, layout=layout).path


def publish(store: Store, snapshots_dir: Path, now: datetime, *, keep: int = 48, retention: Retention | None = None,
            layout: Layout | None = None, _fail_at: str | None = None) -> Published:
    """`publish_snapshot`, also saying how it was written, how long the lock was held and what it wrote.

    `_fail_at` (tests only) raises RuntimeError at that step, to show what a crash there leaves."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    retention = retention or Retention(keep=keep)
    layout = layout or Layout()
    snapshots_dir = Path(snapshots_dir)
    snapshots_dir.mkdir(parents=True, exist_ok=True)
    final = snapshots_dir / snapshot_name(now)
    segmented = layout.segmented(store.path)
    with segments.dir_lock(snapshots_dir):  # every publish writes segments: a copy links the golden parts
        if segmented:
            published = _publish_segments(store, snapshots_dir, final, layout, _fail_at)
        else:
            published = _publish_copy(store, snapshots_dir, final, _fail_at)
        _prune(snapshots_dir, now, retention)
    return published


def _crash(step: str, fail_at: str | None) -> None:
    if fail_at == step:
        raise RuntimeError(f"injected failure at {step}")


def _copy_live(store: Store, target: Path, snapshots_dir: Path, *, forget_log: bool = False,
               point: bool = False) -> tuple[float, list[tuple[str, Path]]]:
    """CHECKPOINT the live file and copy it to `target` in a session of the store (a file kept open stays
    open: `Connection.checkpoint`), its file-backed tables' parts linked into the segments (and the copy's
    views pointed at them, with `point`); the seconds it was held, and the parts linked. `forget_log`:
    first empty the row-write log (a copy never reads it)."""
    wal = store.path.with_name(store.path.name + ".wal")
    with store.session():
        held = time.perf_counter()
        with store.connect() as con:
            if forget_log:
                writes.forget(con, None)
            backed = bool(files.generations(con))
        store.checkpoint()
        shutil.copyfile(store.path, target)
        if wal.exists():  # nothing should be left after CHECKPOINT and close; copied in case
            shutil.copyfile(wal, target.with_name(target.name + ".wal"))
        linked: list[tuple[str, Path]] = []
        if backed:  # opening the copy costs ~20 ms: only a store with golden parts to link
            with duckdb.connect(str(target)) as copy:
                place = segments.files_place(snapshots_dir)
                linked = files.carry(copy, None, place) if point else files.link_parts(copy, place)
        return time.perf_counter() - held, linked


def _install(tmp: Path, final: Path, snapshots_dir: Path) -> None:
    """Sync `tmp` and rename it to `final`: a reader sees the whole snapshot or none."""
    files.fsync(tmp)
    os.replace(tmp, final)
    files.fsync(snapshots_dir)


def _publish_copy(store: Store, snapshots_dir: Path, final: Path, fail_at: str | None) -> Published:
    tmp = snapshots_dir / f".{final.stem}.{uuid.uuid4().hex}.tmp.duckdb"
    try:
        lock_s, linked = _copy_live(store, tmp, snapshots_dir, forget_log=True, point=True)
        _crash("copied", fail_at)
        con = duckdb.connect(str(tmp))
        manifest: list[segments.Segment] = []
        try:
            if linked:  # the golden tables' Parquet parts it reads, for pruning and for `crm-wave sql`
                manifest = segments.files_segments(con, snapshots_dir, linked)
                segments.write_manifest(con, snapshots_dir, enumerate(manifest))
            create_views(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        _crash("views", fail_at)
        _install(tmp, final, snapshots_dir)
        segments.remember_manifest(final, manifest)
    finally:
        _remove(tmp)
    return Published(final, "copy", lock_s)


def _publish_segments(store: Store, snapshots_dir: Path, final: Path, layout: Layout, fail_at: str | None) -> Published:
    snaps = list_snapshots(snapshots_dir)
    previous = segments.read_manifest(snaps[-1]) if snaps else []
    if all(s.kind == "files" for s in previous):  # a copy (its golden parts alone): nothing to build on
        previous = []
    mark = segments.read_mark(snaps[-1]) if previous else None
    # From the Parquet files, before the lock; a logged table's hashes only if its log cannot be used.
    hashes = segments.previous_hashes(snapshots_dir, previous, lambda table: segments.log_of(table) is not None,
                                      segments.read_prints(snaps[-1]) if previous else None)
    exported: segments.Export | None = None
    how, lock_s = "segments", 0.0
    if previous:
        # In a session of the store: a file kept open (the fleet's) stays open, as with the copy layout.
        with store.session(), store.bare() as con:
            held = time.perf_counter()
            con.execute(f"SET memory_limit = '{layout.memory_limit()}'")
            try:
                exported = segments.export(con, snapshots_dir, previous, hashes, max_rows=layout.max_rows, mark=mark)
                if mark is not None and exported.mark is not None and exported.mark[0] == mark[0]:
                    # What the previous snapshot covered, the new one does too (kept if this publish fails).
                    con.execute("BEGIN")
                    writes.forget(con, mark[1])
                    commit(con)
            except segments.TooMuchChange:
                exported = None
            finally:
                with contextlib.suppress(duckdb.Error):  # a broken connection: its own error is the one to see
                    con.execute("RESET memory_limit")
                lock_s = time.perf_counter() - held
    tmp = snapshots_dir / f".{final.stem}.{uuid.uuid4().hex}.tmp.duckdb"
    try:
        if exported is None:  # nothing to build on, or too much changed: the lock is held for a copy alone
            how = "segments from a copy"
            scratch = snapshots_dir / f".{final.stem}.{uuid.uuid4().hex}.scratch.tmp.duckdb"
            try:
                lock_s += _copy_live(store, scratch, snapshots_dir)[0]
                con = layout.connect(scratch)
                try:
                    exported = segments.export(con, snapshots_dir, previous, hashes, mark=mark)
                finally:
                    con.close()
            finally:
                _remove(scratch)
        try:
            _crash("exported", fail_at)
            segments.finish(exported)
            _crash("segments", fail_at)
            segments.compact(snapshots_dir, exported)
            _crash("compacted", fail_at)
            updated = segments.write_snapshot(tmp, snapshots_dir, exported, snaps[-1] if snaps else None)
            _crash("written", fail_at)
        except BaseException:
            segments.discard(exported)
            raise
        _install(tmp, final, snapshots_dir)
        segments.remember(final, exported)
    finally:
        _remove(tmp)
    return Published(final, how, lock_s, tuple(exported.written), tuple(sorted(exported.read.items())), updated)


def publish_now(store: Store) -> Path:
    """Publish a snapshot of `store` now, next to its file (`<data>/snapshots/`): after a share, when a
    push is held and after an operator's command, so the snapshot shows what waits for review."""
    return publish_snapshot(store, Path(store.path).parent / "snapshots", datetime.now(UTC),
                            retention=Retention.from_env(os.environ), layout=Layout.from_env(os.environ))


def latest_snapshot(snapshots_dir: Path, *, at: datetime | None = None) -> Path:
    """The newest snapshot in `snapshots_dir`, or the newest taken at or before `at`."""
    snaps = list_snapshots(snapshots_dir)
    if not snaps:
        raise FileNotFoundError(f"no snapshot in {snapshots_dir}: publish one first (crm_wave.analyst.publish_snapshot)")
    if at is None:
        return snaps[-1]
    limit = _utc(at)
    before = [p for p in snaps if (snapshot_time(p) or limit) <= limit]
    if not before:
        oldest = snapshot_time(snaps[0])
        raise FileNotFoundError(
            f"no snapshot in {snapshots_dir} taken at or before {limit.isoformat()}Z; the oldest is from {oldest.isoformat() if oldest else '?'}Z"
        )
    return before[-1]
