"""Configuration from the environment, read when a command or resource starts (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["ConfigError", "Settings", "DB_FILE", "check_url"]

DB_FILE = "crm_wave.duckdb"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the environment variable and what to set."""


def check_url(name: str, value: str) -> str:
    """`value` when it is an absolute http(s) URL; else ConfigError naming variable `name`."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        hint = f", e.g. http://{value.strip()}" if "://" not in value else ""
        raise ConfigError(f"{name}={value!r} is not an http:// or https:// URL; set it to the full URL{hint}")
    if not parts.hostname:
        raise ConfigError(f"{name}={value!r} names no host; set it to the full URL, e.g. https://host/path")
    return value.strip()


@dataclass(frozen=True)
class Settings:
    """Endpoints, credentials and where the data lives. `repr` never shows a token."""

    crm_base_url: str
    crm_api_token: str = field(repr=False)
    wave_graphql_url: str
    wave_api_token: str = field(repr=False)
    wave_business_id: str | None = None
    data_dir: Path = Path("data")

    @property
    def db_path(self) -> Path:
        """The live DuckDB file."""
        return self.data_dir / DB_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read `CRM_BASE_URL`, `CRM_API_TOKEN`, `WAVE_GRAPHQL_URL`, `WAVE_API_TOKEN`,
        `WAVE_BUSINESS_ID` (optional) and `CRM_WAVE_DATA_DIR` (default ./data)."""
        missing = [k for k in ("CRM_BASE_URL", "CRM_API_TOKEN", "WAVE_GRAPHQL_URL", "WAVE_API_TOKEN") if not environ.get(k)]
        if missing:
            raise ConfigError(f"missing environment variable(s): {', '.join(missing)}; set them (see the "
                              "README's Configuration)")
        return cls(
            crm_base_url=check_url("CRM_BASE_URL", environ["CRM_BASE_URL"]),
            crm_api_token=environ["CRM_API_TOKEN"],
            wave_graphql_url=check_url("WAVE_GRAPHQL_URL", environ["WAVE_GRAPHQL_URL"]),
            wave_api_token=environ["WAVE_API_TOKEN"],
            wave_business_id=environ.get("WAVE_BUSINESS_ID") or None,
            data_dir=Path(environ.get("CRM_WAVE_DATA_DIR") or "data"),
        )
