"""Resources: clients and the store, configured from the environment with `dg.EnvVar`.

Tokens are read when a run starts, never at import, never logged or shown in the UI.
"""


from pathlib import Path

import dagster as dg

from crm_wave.settings import DB_FILE
from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.crm.naming import CrmNaming
from crm_wave.systems.http import HttpPolicy
from crm_wave.systems.wave.client import WaveClient


class CrmResource(dg.ConfigurableResource):
    """The Custom CRM's REST API."""

    base_url: str
    api_token: str
    requests_per_minute: int | None = None
    naming: str | None = None

    def client(self) -> CrmClient:
        """A new client (close it after use)."""
        return CrmClient(base_url=self.base_url, token=self.api_token,
                         policy=HttpPolicy(requests_per_minute=self.requests_per_minute),
                         naming=CrmNaming.loads(self.naming) if self.naming else None)


class WaveResource(dg.ConfigurableResource):
    """Wave's public GraphQL API, for one business."""

    graphql_url: str
    api_token: str
    business_id: str | None = None
    requests_per_minute: int | None = None

    def client(self) -> WaveClient:
        """A new client (close it after use)."""
        return WaveClient(url=self.graphql_url, token=self.api_token, business_id=self.business_id or None,
                          policy=HttpPolicy(requests_per_minute=self.requests_per_minute))


class StoreResource(dg.ConfigurableResource):
    """The sync's DuckDB file in `data_dir`."""

    data_dir: str = "data"

    def store(self) -> Store:
        """The store (opens connections briefly, under a file lock)."""
        return Store(Path(self.data_dir) / DB_FILE)


def _rate(name: str, default: int | None) -> int | None:
    """A requests-per-minute setting: unset -> `default`, 0 -> no limit."""
    import os

    value = os.environ.get(name)
    if not value:
        return default
    return int(value) or None


#: Wave publishes no limit; its schema's @rateLimit directive defaults to 60 per 60 s.
WAVE_DEFAULT_RPM = 60


@dg.definitions
def resources() -> dg.Definitions:
    """Resources bound from the environment (see README: Configuration)."""
    import os

    return dg.Definitions(resources={
        "crm": CrmResource(base_url=dg.EnvVar("CRM_BASE_URL"), api_token=dg.EnvVar("CRM_API_TOKEN"),
                           requests_per_minute=_rate("CRM_REQUESTS_PER_MINUTE", None),
                           naming=os.environ.get("CRM_NAMING") or None),
        "wave": WaveResource(graphql_url=dg.EnvVar("WAVE_GRAPHQL_URL"), api_token=dg.EnvVar("WAVE_API_TOKEN"),
                             business_id=os.environ.get("WAVE_BUSINESS_ID") or None,
                             requests_per_minute=_rate("WAVE_REQUESTS_PER_MINUTE", WAVE_DEFAULT_RPM)),
        "store": StoreResource(data_dir=os.environ.get("CRM_WAVE_DATA_DIR") or "data"),
    })
