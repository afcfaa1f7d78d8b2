"""Building the two clients from one tenant's `Settings`: one place for every caller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from crm_wave.config.settings import WAVE_DEFAULT_RPM, CrmSettings, Settings, WaveSettings
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.wave.client import WaveClient

__all__ = ["WAVE_DEFAULT_RPM", "crm_client", "wave_client", "clients", "rate_file"]


def _settings(settings: Settings | Mapping[str, str]) -> Settings:
    """`settings`, or the default tenant's settings read from the mapping of variables."""
    return settings if isinstance(settings, Settings) else Settings.from_env(settings)


def rate_file(settings: Settings, system: str) -> str:
    """Where the tenant's requests to `system` are counted: one file in its data directory, so the
    runs, the sensors and the CLI of one tenant keep one rate limit together."""
    return str(settings.data_dir / f"{system}-requests.sqlite")


def _policy(settings: Settings, system: str, rate: int | None, overrides: dict[str, Any]) -> HttpPolicy:
    return replace(HttpPolicy(requests_per_minute=rate, rate_file=rate_file(settings, system) if rate else None),
                   **overrides)


def crm_client(settings: Settings | Mapping[str, str], **policy: Any) -> CrmClient:
    """The CRM client of a tenant's settings (`CrmSettings`; a mapping is read as the default tenant's variables).

    Keyword arguments override fields of its `HttpPolicy` (e.g. `timeout_s=5, max_attempts=2`)."""
    s = _settings(settings)
    return CrmClient(base_url=s.crm.base_url, token=s.crm.api_token.get_secret_value(),
                     policy=_policy(s, "crm", s.crm.requests_per_minute, policy),
                     naming=s.crm.naming, profile=s.crm.profile,
                     token_var=CrmSettings.names(s.crm.profile, s.env_prefix)["api_token"],
                     naming_var=CrmSettings.var("naming", s.env_prefix))


def wave_client(settings: Settings | Mapping[str, str], **policy: Any) -> WaveClient:
    """The Wave client of a tenant's settings (`WaveSettings`; a mapping is read as the default tenant's
    variables). Keyword arguments override fields of its `HttpPolicy`."""
    s = _settings(settings)
    return WaveClient(url=s.wave.graphql_url, token=s.wave.api_token.get_secret_value(),
                      business_id=s.wave.business_id, policy=_policy(s, "wave", s.wave.requests_per_minute, policy),
                      business_var=WaveSettings.var("business_id", s.env_prefix))


def clients(settings: Settings | Mapping[str, str]) -> dict[str, CrmClient | WaveClient]:
    """Both clients, keyed by system name."""
    s = _settings(settings)
    return {"crm": crm_client(s), "wave": wave_client(s)}
