"""Running the sync job in-process for one tenant (for `crm-wave sync --once` and the demo)."""

import dagster as dg
from dagster._core.execution.plan.objects import StepFailureData

from crm_wave.defs.assets import PUSH, TENANT_PARTITIONS
from crm_wave.config.tenants import DEFAULT_TENANT


def console_log(level: str) -> dict:
    """Run config of Dagster's console logger (stderr) at `level`."""
    return {"loggers": {"console": {"config": {"log_level": level}}}}


#: Console logs at WARNING: only what went wrong (the CLI prints its own summary).
QUIET = console_log("WARNING")


class SyncHeld(RuntimeError):
    """A pass stopped short: a circuit breaker is open or a step failed; `reasons` says which."""

    def __init__(self, reasons: list[str], *, breaker: bool) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons
        self.breaker = breaker


def _failures(result: dg.ExecuteInProcessResult) -> tuple[list[str], bool]:
    reasons, breaker = [], False
    for event in result.all_events:
        data = event.event_specific_data
        if isinstance(data, dg.AssetCheckEvaluation):
            if not data.passed and data.blocking:
                reasons.append(data.description or data.check_name)
                breaker = breaker or data.check_name == "circuit_breaker"
        elif event.is_step_failure and isinstance(data, StepFailureData) and data.error is not None:
            error = data.error
            while error.cause is not None:  # Dagster wraps the step's own exception: show that one
                error = error.cause
            if error.cls_name == "DagsterAssetCheckFailedError":  # the failed check itself is listed above
                continue
            reasons.append(f"{event.step_key}: {error.message.strip()}")
    return reasons, breaker


def run_sync_job(*, tenant: str = DEFAULT_TENANT, max_passes: int = 4,
                 instance: dg.DagsterInstance | None = None, log_level: str = "WARNING") -> list[dict[str, dict]]:
    """Run `sync_job` for `tenant` until a pass writes nothing; return each pass's asset metadata.

    One run is one pass; the stop rule is the engine's (`PassResult.writes`: records created,
    updated or found already created, reported by each push as `writes`).

    `log_level` of the console log on stderr: "INFO" shows each collect and the pushes' progress
    ("wave customer: 200/5000 sent (4%)"); "WARNING" (default) only what went wrong.

    Raises `SyncHeld` when a pass stops short (a circuit breaker is open, or a step failed).
    """
    from crm_wave.definitions import defs

    job = defs().resolve_job_def("sync_job")
    instance = instance or dg.DagsterInstance.ephemeral()
    if tenant not in instance.get_dynamic_partitions(TENANT_PARTITIONS):
        instance.add_dynamic_partitions(TENANT_PARTITIONS, [tenant])
    passes = []
    for _ in range(max_passes):
        result = job.execute_in_process(instance=instance, partition_key=tenant, tags={"tenant": tenant},
                                        raise_on_error=False, run_config=console_log(log_level))
        meta: dict[str, dict] = {}
        for event in result.get_asset_materialization_events():
            mat = event.materialization
            meta[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
        passes.append(meta)
        reasons, breaker = _failures(result)
        if reasons or not result.success:
            raise SyncHeld(reasons or ["the run failed"], breaker=breaker)
        if sum(meta.get(k, {}).get("writes", 0) for k in PUSH) == 0:
            break
    return passes
