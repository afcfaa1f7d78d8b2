"""Tenants: one CRM and one Wave business each, with their own credentials and DuckDB file.

The registry (`<data>/tenants.json`) holds tenant names and the *names* of their
environment variables, never values. The default tenant is the embedded setup: it reads
the plain variables (`CRM_BASE_URL`, ...) and keeps its file at `<data>/crm_wave.duckdb`;
tenant `acme` reads `ACME_CRM_BASE_URL`, ... and keeps `<data>/tenants/acme/crm_wave.duckdb`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from crm_wave.config.settings import ConfigError, CrmSettings, Settings, WaveSettings

__all__ = ["DEFAULT_TENANT", "Tenant", "TenantConfigError", "TenantError", "UnknownTenant", "add_tenant", "get_tenant", "load_tenants", "remove_tenant"]

DEFAULT_TENANT = "default"
REGISTRY = "tenants.json"
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


class TenantError(ValueError):
    """A tenant name or registry problem."""


class UnknownTenant(TenantError):
    """No tenant of that name is configured."""


class TenantConfigError(TenantError, ConfigError):
    """A tenant's variable is missing or invalid (named with the tenant's prefix)."""


@dataclass(frozen=True)
class Tenant:
    """A tenant and the prefix of its environment variables."""

    name: str
    env_prefix: str = ""

    def var(self, key: str) -> str:
        """The environment variable holding `key` for this tenant, e.g. ACME_WAVE_API_TOKEN."""
        return f"{self.env_prefix}{key}"

    def data_dir(self, data_root: Path) -> Path:
        """Where this tenant's DuckDB file and snapshots live."""
        return data_root if self.name == DEFAULT_TENANT else data_root / "tenants" / self.name

    def settings(self, environ: Mapping[str, str], data_root: Path) -> Settings:
        """This tenant's typed settings (`crm_wave/config/settings.py`); problems name the tenant's variables."""
        try:
            return Settings.from_env(environ, env_prefix=self.env_prefix, data_dir=self.data_dir(data_root))
        except ConfigError as exc:
            raise TenantConfigError(str(exc) if self.name == DEFAULT_TENANT else f"tenant {self.name!r}: {exc}") from None


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise TenantError(f"tenant name {name!r}: use 1-40 of a-z, 0-9, '-' and '_', starting with a letter")
    return name


def _read(data_root: Path) -> list[Tenant]:
    path = data_root / REGISTRY
    if not path.exists():
        return []
    return [Tenant(**t) for t in json.loads(path.read_text())["tenants"]]


def load_tenants(data_root: Path, environ: Mapping[str, str] | None = None) -> list[Tenant]:
    """Every tenant: the default one first, then the registered ones.

    With `environ`, the default tenant counts only when its variables are set (a fleet of
    registered tenants need not configure the embedded one).
    """
    default = Tenant(DEFAULT_TENANT)
    configured = environ is None or all(environ.get(k) for k in (CrmSettings.var("base_url"), WaveSettings.var("graphql_url")))
    return [*([default] if configured else []), *_read(data_root)]


def get_tenant(data_root: Path, name: str) -> Tenant:
    """One tenant by name."""
    for t in load_tenants(data_root):
        if t.name == name:
            return t
    raise UnknownTenant(f"no tenant {name!r} (known: {', '.join(t.name for t in load_tenants(data_root))}); "
                        f"pick one with --tenant, or register it with `crm-wave tenants add {name}`")


def add_tenant(data_root: Path, name: str, env_prefix: str | None = None) -> Tenant:
    """Register a tenant (its variables are `<PREFIX>CRM_BASE_URL`, ...; default prefix NAME_)."""
    _check_name(name)
    if name == DEFAULT_TENANT or any(t.name == name for t in _read(data_root)):
        raise TenantError(f"tenant {name!r} exists already")
    tenant = Tenant(name, env_prefix if env_prefix is not None else re.sub(r"[^A-Z0-9]", "_", name.upper()) + "_")
    _write(data_root, [*_read(data_root), tenant])
    return tenant


def remove_tenant(data_root: Path, name: str) -> None:
    """Unregister a tenant (its DuckDB file is kept)."""
    tenants = _read(data_root)
    if not any(t.name == name for t in tenants):
        raise TenantError(f"no registered tenant {name!r}")
    _write(data_root, [t for t in tenants if t.name != name])


def _write(data_root: Path, tenants: list[Tenant]) -> None:
    data_root.mkdir(parents=True, exist_ok=True)
    tmp = data_root / (REGISTRY + ".tmp")
    tmp.write_text(json.dumps({"tenants": [asdict(t) for t in tenants]}, indent=2) + "\n")
    tmp.replace(data_root / REGISTRY)
