"""What a person at the terminal sees when a command fails: one line, and an exit code per kind.

`explain(exc)` turns any exception into a `CliError` whose message says what is wrong and what
to do, naming the variable, URL or tenant; `crm-wave --debug` shows the traceback instead.
The exit codes are listed in the README's Commands section; keep both in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["EXIT_CODES", "CliError", "explain", "preflight"]

#: Exit code per kind of failure (0 is success; 1 and 3 are the sync's own results).
EXIT_CODES = {
    "sync_failed": 1,      # a stage of the sync failed for another reason than those below; it is printed
    "usage": 2,            # a bad argument or option value (also argparse's own code)
    "held": 3,             # a circuit breaker holds a push until `crm-wave confirm`
    "config": 4,           # an environment variable is missing or invalid
    "unknown_tenant": 5,   # --tenant names no configured tenant
    "auth": 6,             # a system refused the token
    "unreachable": 7,      # a system cannot be reached at its URL
    "no_data": 8,          # nothing synced yet: no snapshot or no DuckDB file; or a dataset's files are missing
    "bad_query": 9,        # `crm-wave sql`: the query failed or would write
    "not_found": 10,       # an id named on the command line does not exist
    "api": 11,             # a system answered with an error the command cannot get past
    "busy": 12,            # the DuckDB file is locked by another process
    "internal": 70,        # a bug: rerun with --debug and report the traceback
}


@dataclass
class CliError(Exception):
    """A failure explained for the terminal: `message` (one line) and the `kind` of EXIT_CODES."""

    message: str
    kind: str

    def __post_init__(self) -> None:
        super().__init__(self.message)

    @property
    def code(self) -> int:
        """The process exit code of this kind."""
        return EXIT_CODES[self.kind]


def _var(prefix: str, system: str | None, what: str, environ: Mapping[str, str] | None = None) -> str:
    """The variable of system 'crm'/'wave' that holds what 'url'/'token', as the tenant with `prefix`
    spells it: `CRM_API_TOKEN`, `ACME_WAVE_GRAPHQL_URL`, or the one the tenant's CRM profile names."""
    from crm_wave.config.settings import CrmSettings, WaveSettings

    crm = CrmSettings.variables(environ, prefix)["base_url" if what == "url" else "api_token"]
    if system == "crm":
        return crm
    wave = WaveSettings.var("graphql_url" if what == "url" else "api_token", prefix)
    return wave if system == "wave" else f"{crm} / {wave}"


def _system_of(exc: BaseException) -> str | None:
    system = getattr(exc, "system", None)
    if system:
        return str(system)
    text = str(exc).lower()
    return "crm" if text.startswith("crm") else "wave" if text.startswith("wave") else None


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def explain(exc: BaseException, *, env_prefix: str = "", environ: Mapping[str, str] | None = None) -> CliError:
    """The one-line message and kind for `exc`; `env_prefix` spells the tenant's variables, and the CRM
    profile `environ` (default: the process environment) configures names the CRM's."""
    import duckdb

    from crm_wave.config.settings import ConfigError
    from crm_wave.mapping.canonical import UnreadableRecord
    from crm_wave.store.files import FilesMissing
    from crm_wave.systems.crm.client import CrmAuthError, CrmError
    from crm_wave.systems.http import TransientError, UnreachableError
    from crm_wave.systems.wave.client import WaveAuthError, WaveError
    from crm_wave.config.tenants import TenantError, UnknownTenant

    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, UnknownTenant):
        return CliError(_one_line(exc), "unknown_tenant")
    if isinstance(exc, ConfigError):
        return CliError(_one_line(exc), "config")
    if isinstance(exc, TenantError):
        return CliError(_one_line(exc), "usage")
    if isinstance(exc, (CrmAuthError, WaveAuthError)):
        system: str | None = "crm" if isinstance(exc, CrmAuthError) else "wave"
        name = "the CRM" if system == "crm" else "Wave"
        return CliError(f"{name} refused the token in {_var(env_prefix, system, 'token', environ)} ({_one_line(exc)}); "
                        f"set it to a valid API token", "auth")
    if isinstance(exc, UnreachableError):
        return CliError(f"{_one_line(exc)}; check {_var(env_prefix, exc.system, 'url', environ)}", "unreachable")
    if isinstance(exc, TransientError):
        system = _system_of(exc)
        return CliError(f"{_one_line(exc)}; check {_var(env_prefix, system, 'url', environ)} and that the system is up, "
                        "then run again", "unreachable")
    if isinstance(exc, (CrmError, WaveError)):
        return CliError(f"{_one_line(exc)}; check {_var(env_prefix, _system_of(exc), 'url', environ)} points at the "
                        "right API", "api")
    if isinstance(exc, FilesMissing):
        return CliError(_one_line(exc), "no_data")
    if isinstance(exc, UnreadableRecord):
        return CliError(_one_line(exc), "sync_failed")
    if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
        return CliError(f"the DuckDB file is in use by another process ({_one_line(exc)}); wait for the running "
                        "sync to finish, or query the snapshot with `crm-wave sql`", "busy")
    return CliError(f"internal error: {type(exc).__name__}: {_one_line(exc)}; rerun with --debug for the "
                    "traceback and report it", "internal")


def preflight(clients: dict) -> None:
    """One cheap read from each system, so a wrong URL or token is reported before a sync starts."""
    crm, wave = clients["crm"], clients["wave"]
    crm.probe("customers")  # a profile CRM without a feed would otherwise read every record here
    _ = wave.business_id
