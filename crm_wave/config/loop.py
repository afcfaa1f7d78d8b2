"""The `crm-wave sync` loop's variables (not `--once`): how often it publishes the analyst snapshot, how long
it keeps the tenant's DuckDB file open between syncs.

`CRM_WAVE_SYNC_SNAPSHOT_SECONDS` (default 60): the loop publishes a snapshot at most this often; a sync
within it leaves the snapshot behind, and a later turn (at the latest the loop's exit) publishes it. 0:
after every sync, as before. `CRM_WAVE_SYNC_KEEP_OPEN_SECONDS` (default: `--every` plus 60): the file
stays open this long after a sync (`crm_wave.store.connection.keep_open`), so the next sync neither opens
nor checkpoints it; another process that wants the file gets it within a tenth of a second. 0: close
after every sync. Only the loop reads them, when it starts: a bad value stops it with one line naming
the variable; `sync --once` and the other commands never read them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from crm_wave.config.settings import _Section, finite_number

__all__ = ["LoopSettings"]


def _seconds(value: object, zero: str) -> float:
    """`value` as finite seconds >= 0; ValueError saying what to set otherwise."""
    return finite_number(value, lambda x: x >= 0, f"use a number of seconds, 0 or more, e.g. 60 (0: {zero})")


class LoopSettings(_Section):
    """`CRM_WAVE_SYNC_SNAPSHOT_SECONDS` (default 60) and `CRM_WAVE_SYNC_KEEP_OPEN_SECONDS` (default: `--every` + 60)."""

    model_config = SettingsConfigDict(env_prefix="CRM_WAVE_SYNC_")

    #: The loop publishes the tenant's analyst snapshot at most this often (0: after every sync).
    snapshot_seconds: float = 60.0
    #: The loop keeps the tenant's DuckDB file open this long after a sync (None: `--every` + 60; 0: closes it).
    keep_open_seconds: float | None = None

    @field_validator("snapshot_seconds", mode="before")
    @classmethod
    def _valid_snapshot(cls, value: object) -> float:
        return _seconds(value, "after every sync")

    @field_validator("keep_open_seconds", mode="before")
    @classmethod
    def _valid_keep(cls, value: object) -> float | None:
        return None if value is None else _seconds(value, "close the file after every sync")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> LoopSettings:
        """The section from `environ` (default: the process environment); ConfigError naming the variable and what to set."""
        return cls.load_section(environ)

    def keep_open_s(self, every_s: float) -> float:
        """Seconds to keep the file open after a sync of a loop that looks every `every_s` seconds."""
        return every_s + 60.0 if self.keep_open_seconds is None else self.keep_open_seconds
