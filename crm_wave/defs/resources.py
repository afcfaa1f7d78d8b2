"""Resources: per-tenant settings, clients and the store, read from the environment when a run starts.

Every asset is partitioned by tenant. A tenant's credentials live in environment
variables (`CRM_API_TOKEN` for the default tenant, `ACME_CRM_API_TOKEN` for `acme`, see
`crm_wave/tenants.py`): the resource's config holds only the data directory, so no value
of a secret ever reaches the run config, the UI, logs or DuckDB. Variables are read when
a step asks for a client, never at import.
"""

import os
from pathlib import Path

import dagster as dg

from crm_wave.settings import Settings
from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.naming import CrmNaming
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.wave.client import WaveClient
from crm_wave.tenants import Tenant, get_tenant

#: Wave publishes no limit; its schema's @rateLimit directive defaults to 60 per 60 s.
WAVE_DEFAULT_RPM = 60


def _rate(value: str | None, default: int | None) -> int | None:
    """A requests-per-minute setting: unset -> `default`, 0 -> no limit."""
    if not value:
        return default
    return int(value) or None


class SyncResource(dg.ConfigurableResource):
    """Settings, clients and DuckDB store of one tenant at a time."""

    data_root: str = "data"

    def tenant(self, name: str) -> Tenant:
        """The tenant registered under `name`."""
        return get_tenant(Path(self.data_root), name)

    def _env(self, tenant: str) -> dict[str, str]:
        return self.tenant(tenant).environ(os.environ, Path(self.data_root))

    def settings(self, tenant: str) -> Settings:
        """The tenant's endpoints and credentials (repr hides the tokens)."""
        return self.tenant(tenant).settings(os.environ, Path(self.data_root))

    def store(self, tenant: str) -> Store:
        """The tenant's DuckDB file."""
        return Store(self.tenant(tenant).data_dir(Path(self.data_root)) / "crm_wave.duckdb")

    def crm(self, tenant: str) -> CrmClient:
        """A new CRM client for the tenant (close it after use)."""
        s, env = self.settings(tenant), self._env(tenant)
        return CrmClient(base_url=s.crm_base_url, token=s.crm_api_token,
                         policy=HttpPolicy(requests_per_minute=_rate(env.get("CRM_REQUESTS_PER_MINUTE"), None)),
                         naming=CrmNaming.loads(env["CRM_NAMING"]) if env.get("CRM_NAMING") else None)

    def wave(self, tenant: str) -> WaveClient:
        """A new Wave client for the tenant (close it after use)."""
        s, env = self.settings(tenant), self._env(tenant)
        return WaveClient(url=s.wave_graphql_url, token=s.wave_api_token, business_id=s.wave_business_id,
                          policy=HttpPolicy(requests_per_minute=_rate(env.get("WAVE_REQUESTS_PER_MINUTE"), WAVE_DEFAULT_RPM)))

    def client(self, system: str, tenant: str):
        """The client of `system` ("crm" or "wave") for the tenant."""
        return self.crm(tenant) if system == "crm" else self.wave(tenant)


@dg.definitions
def resources() -> dg.Definitions:
    """The sync resource; `CRM_WAVE_DATA_DIR` (default ./data) is the data root of every tenant."""
    return dg.Definitions(resources={"sync": SyncResource(data_root=os.environ.get("CRM_WAVE_DATA_DIR") or "data")})
