"""Building the two clients from one tenant's settings (`Tenant.environ`): one place for every caller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from crm_wave.settings import ConfigError, Settings
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.naming import CrmNaming
from crm_wave.systems.crm.profile import profile_from_env
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.wave.client import WaveClient

__all__ = ["WAVE_DEFAULT_RPM", "crm_client", "wave_client", "clients", "rate_file"]

#: Wave publishes no limit; its schema's @rateLimit directive defaults to 60 per 60 s.
WAVE_DEFAULT_RPM = 60


def _rate(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    """The requests-per-minute setting `name`: unset -> `default`, 0 -> no limit."""
    value = (env.get(name) or "").strip()
    if not value:
        return default
    try:
        rate = int(value)
    except ValueError:
        rate = -1
    if rate < 0:
        raise ConfigError(f"{name}: expected a whole number of requests a minute (0 = no limit), got {value!r}")
    return rate or None


def rate_file(settings: Settings, system: str) -> str:
    """Where the tenant's requests to `system` are counted: one file in its data directory, so the
    runs, the sensors and the CLI of one tenant keep one rate limit together."""
    return str(settings.data_dir / f"{system}-requests.sqlite")


def _policy(settings: Settings, system: str, rate: int | None, overrides: dict[str, Any]) -> HttpPolicy:
    return replace(HttpPolicy(requests_per_minute=rate, rate_file=rate_file(settings, system) if rate else None),
                   **overrides)


def crm_client(env: Mapping[str, str], **policy: Any) -> CrmClient:
    """The CRM client: `CRM_BASE_URL`, `CRM_API_TOKEN`, optional `CRM_NAMING`, `CRM_REQUESTS_PER_MINUTE`
    (none by default; counted for the tenant's every process, see `rate_file`).

    Keyword arguments override fields of its `HttpPolicy` (e.g. `timeout_s=5, max_attempts=2`)."""
    s = Settings.from_env(env)
    profile = profile_from_env(env)  # CRM_PROFILE: a shipped profile name or a TOML path (default contract)
    return CrmClient(base_url=env.get(profile.base_url_env) or s.crm_base_url,
                     token=env.get(profile.token_env) or s.crm_api_token,
                     policy=_policy(s, "crm", _rate(env, "CRM_REQUESTS_PER_MINUTE", None), policy),
                     naming=crm_naming(env), profile=profile)


def crm_naming(env: Mapping[str, str]) -> CrmNaming | None:
    """The CRM's names from `CRM_NAMING` (JSON or TOML), None when unset; ConfigError naming the variable."""
    text = env.get("CRM_NAMING")
    if not text or not text.strip():
        return None
    try:
        return CrmNaming.loads(text)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"CRM_NAMING is not a valid naming ({exc}); fix it or unset it for the "
                          "default names (docs/mappings.md)") from None


def wave_client(env: Mapping[str, str], **policy: Any) -> WaveClient:
    """The Wave client: `WAVE_GRAPHQL_URL`, `WAVE_API_TOKEN`, optional `WAVE_BUSINESS_ID`,
    `WAVE_REQUESTS_PER_MINUTE` (default 60 for all of the tenant's processes together; 0 = no
    limit). Keyword arguments override fields of its `HttpPolicy`."""
    s = Settings.from_env(env)
    rate = _rate(env, "WAVE_REQUESTS_PER_MINUTE", WAVE_DEFAULT_RPM)
    return WaveClient(url=s.wave_graphql_url, token=s.wave_api_token, business_id=s.wave_business_id,
                      policy=_policy(s, "wave", rate, policy))


def clients(env: Mapping[str, str]) -> dict[str, CrmClient | WaveClient]:
    """Both clients, keyed by system name."""
    return {"crm": crm_client(env), "wave": wave_client(env)}
