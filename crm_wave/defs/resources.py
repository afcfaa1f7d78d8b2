"""Resources: per-tenant settings, clients and the store, read from the environment when a run starts.

Every asset is partitioned by tenant. A tenant's credentials live in environment
variables (`CRM_API_TOKEN` for the default tenant, `ACME_CRM_API_TOKEN` for `acme`, see
`crm_wave/tenants.py`): the resource's config holds only the data directory, so no value
of a secret ever reaches the run config, the UI, logs or DuckDB. Variables are read when
a step asks for a client, never at import.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from crm_wave.clients import crm_client, wave_client
from crm_wave.settings import Settings
from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.wave.client import WaveClient
from crm_wave.tenants import Tenant, get_tenant

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

    def client(self, system: str, tenant: str, **policy: Any) -> CrmClient | WaveClient:
        """A new client of `system` ("crm" or "wave") for the tenant (close it after use).

        Keyword arguments override fields of the client's `HttpPolicy` (the sensors ask with a
        short timeout and few retries)."""
        self.settings(tenant)  # names the tenant's missing variables, if any
        env = self._env(tenant)
        return crm_client(env, **policy) if system == "crm" else wave_client(env, **policy)


@dg.definitions
def resources() -> dg.Definitions:
    """The sync resource; `CRM_WAVE_DATA_DIR` (default ./data) is the data root of every tenant."""
    return dg.Definitions(resources={"sync": SyncResource(data_root=os.environ.get("CRM_WAVE_DATA_DIR") or "data")})
