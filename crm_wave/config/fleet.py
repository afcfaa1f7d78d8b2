"""The fleet's and the collect schedule's variables: a settings section of their own.

`CRM_WAVE_FLEET` (loop, batch or off), `CRM_WAVE_FLEET_MINUTES` (the length of one `loop` fleet
run), `CRM_WAVE_FLEET_SNAPSHOT_SECONDS` (how often a `loop` run publishes a tenant's snapshot at
most), `CRM_WAVE_FLEET_FULL_SECONDS` (how old a tenant's last pass of every stage may get before the
fleet runs one, though no head moved), `CRM_WAVE_FLEET_SHARDS` (how many `loop` runs serve the
tenants at once, each a share of them) and `CRM_WAVE_SCHEDULE_MINUTES` (how often `collect_schedule` gives a tenant whose heads did
not move a run anyway). Only `crm_wave/defs/fleet.py` and `crm_wave/defs/automation.py` read
them, when a sensor or schedule evaluates (the fleet mode also when the definitions load, to
choose which automations start running): `AppSettings`, which every sync loads, does not, so a
bad value stops the fleet or the schedule with a one-line error naming the variable, never a sync.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import field_validator
from pydantic_settings import SettingsConfigDict

from crm_wave.config.settings import _Section, finite_number

__all__ = ["FLEET_VAR", "FleetSettings"]

FLEET_VAR = "CRM_WAVE_FLEET"
_OFF = ("", "0", "off", "no", "false")


class FleetSettings(_Section):
    """`CRM_WAVE_FLEET` (default off), `CRM_WAVE_FLEET_MINUTES` (default 15), `CRM_WAVE_SCHEDULE_MINUTES` (default 15),
    `CRM_WAVE_FLEET_SNAPSHOT_SECONDS` (default 60), `CRM_WAVE_FLEET_FULL_SECONDS` (default 300) and
    `CRM_WAVE_FLEET_SHARDS` (default 1)."""

    model_config = SettingsConfigDict(env_prefix="CRM_WAVE_")

    fleet: Literal["loop", "batch"] | None = None
    fleet_minutes: float = 15.0
    schedule_minutes: float = 15.0
    #: A `loop` run publishes a tenant's analyst snapshot at most this often (`FleetConfig.snapshot_every_s`).
    fleet_snapshot_seconds: float = 60.0
    #: The fleet's pass of every stage when no head moved, for changes a look cannot see (`FleetConfig.full_every_s`).
    fleet_full_seconds: float = 300.0
    #: `loop` runs at once, each serving its share of the tenants (`shard_of`): one run is one Python
    #: process, so about one core (its threads share the GIL). Default 1; set it to the machine's cores.
    fleet_shards: int = 1

    @field_validator("fleet", mode="before")
    @classmethod
    def _valid_mode(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        mode = value.strip().lower()
        if mode in _OFF:
            return None
        if mode not in ("loop", "batch"):
            raise ValueError("use loop, batch or off")
        return mode

    @field_validator("fleet_minutes", "schedule_minutes", mode="before")
    @classmethod
    def _valid_minutes(cls, value: Any) -> Any:
        return finite_number(value, lambda x: x > 0, "use a number of minutes above 0, e.g. 15")

    @field_validator("fleet_snapshot_seconds", mode="before")
    @classmethod
    def _valid_seconds(cls, value: Any) -> Any:
        return finite_number(value, lambda x: x >= 0, "use a number of seconds, 0 or more, e.g. 60 (0: after every sync)")

    @field_validator("fleet_shards", mode="before")
    @classmethod
    def _valid_shards(cls, value: Any) -> Any:
        return int(finite_number(value, lambda x: 1 <= x <= 64 and x == int(x), "use a whole number from 1 to 64, e.g. 2"))

    @field_validator("fleet_full_seconds", mode="before")
    @classmethod
    def _valid_full_seconds(cls, value: Any) -> Any:
        return finite_number(value, lambda x: x >= 10, "use a number of seconds, 10 or more, e.g. 300")

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> FleetSettings:
        """The section from `environ` (default: the process environment); ConfigError naming the variable and what to set."""
        return cls.load_section(environ)

    @classmethod
    def value(cls, field: str, environ: Mapping[str, str] | None = None) -> Any:
        """One field, validating its own variable only: a bad value of another variable does not stop it."""
        environ = os.environ if environ is None else environ
        name = cls.var(field)
        return getattr(cls.load({name: environ[name]} if name in environ else {}), field)

    @property
    def schedule_every_s(self) -> float:
        """`schedule_minutes` in seconds."""
        return self.schedule_minutes * 60
