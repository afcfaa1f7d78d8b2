"""Configuration from the environment, read when a command or resource starts (never at import)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Settings", "DB_FILE"]

DB_FILE = "crm_wave.duckdb"


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
            raise ValueError(f"missing environment variable(s): {', '.join(missing)}")
        return cls(
            crm_base_url=environ["CRM_BASE_URL"],
            crm_api_token=environ["CRM_API_TOKEN"],
            wave_graphql_url=environ["WAVE_GRAPHQL_URL"],
            wave_api_token=environ["WAVE_API_TOKEN"],
            wave_business_id=environ.get("WAVE_BUSINESS_ID") or None,
            data_dir=Path(environ.get("CRM_WAVE_DATA_DIR") or "data"),
        )
