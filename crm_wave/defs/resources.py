"""Resources: per-tenant settings, clients and the store, read from the environment when a step asks.

Every asset is partitioned by tenant, and a tenant's credentials live in environment variables
named with its prefix (`CRM_API_TOKEN` for the default tenant, `ACME_CRM_API_TOKEN` for `acme`,
see `crm_wave/config/tenants.py`). Which variables a step reads therefore depends on the partition it
runs for, which a resource's config (fixed when the definitions load) cannot express: the
resource's config holds the data root only (`dg.EnvVar("CRM_WAVE_DATA_DIR")` when that is set,
so the UI shows the variable's name), and `settings(tenant)` reads the tenant's typed `Settings`
(`crm_wave/config/settings.py`, tokens as `SecretStr`) when a step asks for a client, never at import.
No value of a secret reaches run config, the UI, logs or DuckDB.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from crm_wave.config.clients import crm_client, wave_client
from crm_wave.config.settings import DATA_DIR_VAR, DB_FILE, Settings, data_root, data_root_set
from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.wave.client import WaveClient
from crm_wave.config.tenants import Tenant, get_tenant


class SyncResource(dg.ConfigurableResource):
    """Settings, clients and DuckDB store of one tenant at a time."""

    data_root: str = Field(default="data", description=f"The data root of every tenant (`{DATA_DIR_VAR}`): "
                           "registry, DuckDB files, snapshots. Tokens are read per tenant from the environment "
                           "(CRM_API_TOKEN, ACME_CRM_API_TOKEN, ...), never from config.")

    def tenant(self, name: str) -> Tenant:
        """The tenant registered under `name`."""
        return get_tenant(Path(self.data_root), name)

    def settings(self, tenant: str) -> Settings:
        """The tenant's endpoints and credentials (repr hides the tokens)."""
        return self.tenant(tenant).settings(os.environ, Path(self.data_root))

    def store(self, tenant: str) -> Store:
        """The tenant's DuckDB file."""
        return Store(self.tenant(tenant).data_dir(Path(self.data_root)) / DB_FILE)

    def client(self, system: str, tenant: str, **policy: Any) -> CrmClient | WaveClient:
        """A new client of `system` ("crm" or "wave") for the tenant (close it after use).

        Keyword arguments override fields of the client's `HttpPolicy` (the sensors ask with a
        short timeout and few retries)."""
        settings = self.settings(tenant)  # names the tenant's missing variables, if any
        return crm_client(settings, **policy) if system == "crm" else wave_client(settings, **policy)


@dg.definitions
def resources() -> dg.Definitions:
    """The sync resource, its data root from `CRM_WAVE_DATA_DIR` (an `EnvVar`, resolved when a run or
    sensor starts) or ./data when that is unset."""
    root: Any = dg.EnvVar(DATA_DIR_VAR) if data_root_set() else str(data_root({}))
    return dg.Definitions(resources={"sync": SyncResource(data_root=root)})
