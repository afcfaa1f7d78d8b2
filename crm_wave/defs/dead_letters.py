"""Dead letters in the UI: a failing (warning) check on each push listing the records its system
refused (evaluated in `sync_pass`'s step, like the checks of `checks.py`), and
`retry_dead_letters_job`, launched from the UI with the ids to retry."""

import dagster as dg

from crm_wave.analyst.snapshot import publish_now
from crm_wave.defs.checks import SHOWN, StepCheck, md_listing
from crm_wave.defs.resources import SyncResource
from crm_wave.store import Store
from crm_wave.store.dead_letters import list_dead_letters, retry_dead_letters
from crm_wave.sync.stages import STAGES


def dead_letters_check(push: str, system: str, entity: str) -> StepCheck:
    """Fails with WARN severity while `system` has refused records of `entity` (its push), listing them."""
    spec = dg.AssetCheckSpec("no_dead_letters", asset=push,
                             description=f"Warns while {system} refused {entity} records (dead letters), listing each "
                                         "with the field and message. Fix the data at its source, or retry them with "
                                         "`retry_dead_letters_job` (Launchpad: the tenant and global ids) or "
                                         "`crm-wave deadletters retry`.")

    def _check(store: Store) -> dg.AssetCheckResult:
        with store.connect() as con:
            letters = list_dead_letters(con, system, entity)
        listing = md_listing([f"`{d.global_id}` (record {d.record_id or 'not created'}) {d.op}: "
                              f"**{d.field or 'record'}**: {d.message} _(attempts {d.attempts})_" for d in letters[:SHOWN]],
                             len(letters), "`crm-wave deadletters`")
        return dg.AssetCheckResult(
            passed=not letters, severity=dg.AssetCheckSeverity.WARN,
            description=(f"{len(letters)} {entity} record(s) refused by {system}" if letters else "none"),
            metadata={"dead_letters": len(letters), "parked": sum(d.attempts >= 3 for d in letters),
                      "records": listing,
                      "global_ids": dg.MetadataValue.json([d.global_id for d in letters[:SHOWN]])})

    return StepCheck(spec, _check)


#: One check per push.
CHECKS = [dead_letters_check(s.name, s.system or "", s.entity) for s in STAGES if s.kind == "push"]


class RetryConfig(dg.Config):
    """Which dead letters to retry: `global_ids` (from the check's list), or `all: true`."""

    tenant: str = "default"
    global_ids: list[str] = []
    all: bool = False


@dg.op(name="retry_dead_letters")
def retry_op(context: dg.OpExecutionContext, config: RetryConfig, sync: SyncResource) -> int:
    """Reset the attempts of the named dead letters; the next sync sends them again."""
    if not (config.all or config.global_ids):
        raise dg.Failure("name the global ids to retry in `global_ids` (the no_dead_letters check lists them), "
                         "or set `all: true`")
    store = sync.store(config.tenant)
    with store.connect() as con:
        n, unknown = retry_dead_letters(con, None if config.all else list(config.global_ids))
    if unknown:
        raise dg.Failure(f"no dead letter for {', '.join(unknown)} in tenant {config.tenant!r}; nothing was retried")
    publish_now(store)
    context.log.info(f"{n} dead letter(s) of tenant {config.tenant!r} will be retried by the next sync")
    context.add_output_metadata({"retried": n})
    return n


@dg.job(name="retry_dead_letters_job",
        description="Retry dead letters from the UI: Launchpad config `ops: {retry_dead_letters: {config: {tenant: "
                    "default, global_ids: [crm-customer:C1024]}}}` (or `all: true`); the next sync sends them.")
def retry_dead_letters_job() -> None:
    retry_op()


@dg.definitions
def defs() -> dg.Definitions:
    """The retry job (the checks are `sync_pass`'s)."""
    return dg.Definitions(jobs=[retry_dead_letters_job])
