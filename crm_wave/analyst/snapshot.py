"""Snapshots of the sync's DuckDB file for analysts: copies taken between transactions.

The live file is never the one analysts open. `publish_snapshot` holds the store's
exclusive lock only for a CHECKPOINT and a file copy (so no transaction is half in the
copy), adds the analyst views to the copy outside the lock, and renames it into place
atomically: a reader sees a whole snapshot or none. Snapshots are named by the UTC time
they were taken, `crm_wave-YYYYMMDDTHHMMSS.ffffffZ.duckdb`, and are opened read-only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from crm_wave.analyst.views import create_views
from crm_wave.store.db import Store

__all__ = ["SNAPSHOT_PREFIX", "Retention", "list_snapshots", "prune_snapshots", "latest_snapshot", "publish_now", "publish_snapshot", "snapshot_name",
           "snapshot_time"]

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
    `max_bytes` (the oldest go first); the newest is always kept, whatever its age or size.

    Defaults: 48 snapshots, 24 hours, 256 MB; set with `CRM_WAVE_SNAPSHOT_KEEP`,
    `CRM_WAVE_SNAPSHOT_MAX_AGE_HOURS` and `CRM_WAVE_SNAPSHOT_MAX_MB`."""

    keep: int = 48
    max_age: timedelta = timedelta(hours=24)
    max_bytes: int = 256 * 2**20

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Retention:
        """The retention the environment sets (defaults for unset variables); ConfigError names a bad one."""
        from crm_wave.config.settings import ConfigError

        def number(name: str, default: float) -> float:
            text = (environ.get(name) or "").strip()
            try:
                value = float(text) if text else default
            except ValueError:
                value = -1
            if value <= 0:
                raise ConfigError(f"{name}={text!r} is not a positive number; set it to one or unset it")
            return value

        return cls(keep=max(1, int(number("CRM_WAVE_SNAPSHOT_KEEP", cls.keep))),
                   max_age=timedelta(hours=number("CRM_WAVE_SNAPSHOT_MAX_AGE_HOURS", cls.max_age.total_seconds() / 3600)),
                   max_bytes=int(number("CRM_WAVE_SNAPSHOT_MAX_MB", cls.max_bytes / 2**20) * 2**20))


def prune_snapshots(snapshots_dir: Path, now: datetime, retention: Retention) -> list[Path]:
    """Remove the snapshots `retention` does not keep (as of `now`); return them, oldest first."""
    snaps = list_snapshots(snapshots_dir)
    if not snaps:
        return []
    newest, older = snaps[-1], snaps[:-1]
    limit = _utc(now) - retention.max_age
    kept = [p for p in older if (snapshot_time(p) or limit) >= limit][-(retention.keep - 1):] if retention.keep > 1 else []
    total = newest.stat().st_size
    within: list[Path] = []
    for p in reversed(kept):  # newest first, until the size is spent
        total += p.stat().st_size
        if total > retention.max_bytes:
            break
        within.append(p)
    removed = [p for p in older if p not in within]
    for p in removed:
        _remove(p)
    return removed


def publish_snapshot(store: Store, snapshots_dir: Path, now: datetime, *, keep: int = 48,
                     retention: Retention | None = None) -> Path:
    """Copy the live database to a new snapshot with the analyst views; then prune by `retention`
    (default: the `keep` newest, within the default age and size).

    Runs never wait on analysts: the lock is held only for CHECKPOINT and the copy.
    """
    if keep < 1:
        raise ValueError("keep must be at least 1")
    retention = retention or Retention(keep=keep)
    snapshots_dir = Path(snapshots_dir)
    snapshots_dir.mkdir(parents=True, exist_ok=True)
    final = snapshots_dir / snapshot_name(now)
    tmp = snapshots_dir / f".{final.stem}.{uuid.uuid4().hex}.tmp.duckdb"
    wal = store.path.with_name(store.path.name + ".wal")
    try:
        with store.locked():
            con = duckdb.connect(str(store.path))
            try:
                con.execute("CHECKPOINT")
            finally:
                con.close()
            shutil.copyfile(store.path, tmp)
            if wal.exists():  # nothing should be left after CHECKPOINT and close; copied in case
                shutil.copyfile(wal, tmp.with_name(tmp.name + ".wal"))
        con = duckdb.connect(str(tmp))
        try:
            create_views(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        _remove(tmp)
    prune_snapshots(snapshots_dir, now, retention)
    return final


def publish_now(store: Store) -> Path:
    """Publish a snapshot of `store` now, next to its file (`<data>/snapshots/`): after a share, when a
    push is held and after an operator's command, so the snapshot shows what waits for review."""
    return publish_snapshot(store, Path(store.path).parent / "snapshots", datetime.now(UTC),
                            retention=Retention.from_env(os.environ))


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
