"""Asset checks: the circuit breaker, as a blocking check on every share asset."""

import dagster as dg

from crm_wave.defs.resources import StoreResource
from crm_wave.sync.breaker import breaker_state
from crm_wave.sync.names import ENTITIES, share_table


def breaker_check(system: str, entity: str) -> dg.AssetChecksDefinition:
    """Fails (and so holds the push in the same run) while the share table's breaker is open."""

    @dg.asset_check(asset=share_table(system, entity), name="circuit_breaker", blocking=True,
                    description="Holds the push when it would update or delete over 20% (and over 50) of the "
                                "target's records, until `crm-wave confirm`.")
    def _check(store: StoreResource) -> dg.AssetCheckResult:
        state = breaker_state(store.store(), system, entity)
        return dg.AssetCheckResult(passed=not state.open, description=state.describe(),
                                   severity=dg.AssetCheckSeverity.ERROR,
                                   metadata={"changes": state.changes, "target_size": state.target_size,
                                             "confirmed": state.confirmed})

    return _check


@dg.definitions
def defs() -> dg.Definitions:
    """One circuit-breaker check per share asset."""
    return dg.Definitions(asset_checks=[breaker_check(s, e) for e in ENTITIES for s in ("crm", "wave")])
