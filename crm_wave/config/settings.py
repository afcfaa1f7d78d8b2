"""Configuration: one typed settings object per tenant, read when a command or run starts (never at import).

A tenant's variables are the plain names with its prefix: the default tenant reads `CRM_BASE_URL`,
`CRM_API_TOKEN`, ...; tenant `acme` reads `ACME_CRM_BASE_URL`, `ACME_CRM_API_TOKEN`, ... (see
`crm_wave/config/tenants.py`). pydantic-settings reads and types them (`CrmSettings`, `WaveSettings`:
tokens are `SecretStr`, so no `repr`, log line or error shows them); `Settings` joins both with the
tenant's data directory. `CRM_WAVE_DATA_DIR` is read by `data_root` alone.

Values come from the mapping a caller passes (the process environment by default); the CLI first
fills unset variables from `<data root>/.env` (`crm_wave/config/envfile.py`, written by `crm-wave dev`).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from crm_wave.systems.crm.naming import CrmNaming
from crm_wave.systems.crm.profile import Profile, ProfileError, load_profile

__all__ = ["AppSettings", "ConfigError", "CrmSettings", "DATA_DIR_VAR", "DB_FILE", "Settings", "WaveSettings", "check_url",
           "data_root", "data_root_set"]

DB_FILE = "crm_wave.duckdb"
DATA_DIR_VAR = "CRM_WAVE_DATA_DIR"
#: Wave publishes no limit; its schema's @rateLimit directive defaults to 60 per 60 s.
WAVE_DEFAULT_RPM = 60


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the environment variable and what to set."""


def data_root(environ: Mapping[str, str] | None = None) -> Path:
    """The directory of every tenant's data: `CRM_WAVE_DATA_DIR`, default ./data."""
    return Path((os.environ if environ is None else environ).get(DATA_DIR_VAR) or "data")


def data_root_set(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `CRM_WAVE_DATA_DIR` is set (Dagster then shows it as an `EnvVar`)."""
    return bool((os.environ if environ is None else environ).get(DATA_DIR_VAR))


def _url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL, or None."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https"):
        hint = f", e.g. http://{value.strip()}" if "://" not in value else ""
        return f"is not an http:// or https:// URL; set it to the full URL{hint}"
    if not parts.hostname:
        return "names no host; set it to the full URL, e.g. https://host/path"
    return None


def check_url(name: str, value: str) -> str:
    """`value` when it is an absolute http(s) URL; else ConfigError naming variable `name`."""
    problem = _url_problem(value)
    if problem:
        raise ConfigError(f"{name}={value!r} {problem}")
    return value.strip()


def _url(value: str) -> str:
    problem = _url_problem(value)
    if problem:
        raise ValueError(problem)
    return value.strip()


def _rate(value: Any) -> int | None:
    """Requests a minute: a whole number, 0 meaning no limit (None)."""
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"expected a whole number of requests a minute (0 = no limit), got {text!r}")
    return int(text) or None


class _Environ(EnvSettingsSource):
    """The environment source of pydantic-settings, over a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str], env_prefix: str) -> None:
        self._environ = environ
        super().__init__(settings_cls, env_prefix=env_prefix)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def finite_number(value: Any, ok: Callable[[float], bool], what: str) -> float:
    """`value` as a finite float that is `ok`; ValueError saying `what` to set otherwise."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and ok(number)):
        raise ValueError(what)
    return number


class _Section(BaseSettings):
    """The variables of one system; `load` reads them with a tenant's prefix and names problems by variable."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", env_ignore_empty=True)
    #: The variable name of each required field, in the order a "missing" message lists them.
    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what `load` passes: a tenant's values must never fall back to another tenant's variables.
        return (init_settings,)

    @field_validator("base_url", "graphql_url", mode="before", check_fields=False)
    @classmethod
    def _valid_url(cls, value: Any) -> Any:
        return _url(value) if isinstance(value, str) else value

    @field_validator("requests_per_minute", mode="before", check_fields=False)
    @classmethod
    def _valid_rate(cls, value: Any) -> Any:
        return _rate(value) if isinstance(value, str) else value

    @classmethod
    def load_section(cls, environ: Mapping[str, str] | None = None) -> Self:
        """The section from `environ` (default: the process environment), its variables named by its
        `env_prefix`; ConfigError naming the first bad variable, its value and what to set."""
        environ = os.environ if environ is None else environ
        try:
            return cls(**_Environ(cls, environ, cls.model_config.get("env_prefix", ""))())
        except ValidationError as exc:
            error = exc.errors()[0]
            name = cls.var(str(error["loc"][0]))
            cause = error.get("ctx", {}).get("error", error["msg"])
            raise ConfigError(f"{name}={environ.get(name, '').strip()!r}: {cause}") from None

    @classmethod
    def var(cls, field: str, prefix: str = "") -> str:
        """The variable of `field` for a tenant with `prefix`, e.g. ACME_WAVE_API_TOKEN."""
        return f"{prefix}{cls.model_config.get('env_prefix', '')}{field.upper()}"

    @classmethod
    def _read(cls, environ: Mapping[str, str], prefix: str, names: dict[str, str], **known: Any
              ) -> tuple[Self | None, list[str], list[str]]:
        """(settings or None, missing variables, other problems) of the tenant with `prefix`."""
        values = {**_Environ(cls, environ, prefix + cls.model_config.get("env_prefix", ""))(), **known}
        for field, name in names.items():  # variables a CRM profile renames
            values.pop(field, None)
            if environ.get(name):
                values[field] = environ[name]
        try:
            return cls(**values), [], []
        except ValidationError as exc:
            missing, problems = [], []
            for error in exc.errors():
                field = str(error["loc"][0])
                name = names.get(field) or cls.var(field, prefix)
                if error["type"] == "missing":
                    missing.append(name)
                elif field.endswith("url"):
                    problems.append(f"{name}={error['input']!r} {error['ctx']['error']}")
                else:
                    cause = error.get("ctx", {}).get("error", error["msg"])
                    problems.append(f"{name}: {cause}")
            return None, missing, problems


class CrmSettings(_Section):
    """The CRM's variables: `CRM_BASE_URL`, `CRM_API_TOKEN`, optional `CRM_PROFILE`, `CRM_NAMING`,
    `CRM_REQUESTS_PER_MINUTE` (none by default; 0 = no limit)."""

    model_config = SettingsConfigDict(env_prefix="CRM_", arbitrary_types_allowed=True)

    base_url: str
    api_token: SecretStr
    profile: Annotated[Profile, NoDecode] = Field(default_factory=load_profile, repr=False)
    naming: Annotated[CrmNaming | None, NoDecode] = None
    requests_per_minute: int | None = None

    @field_validator("profile", mode="before")
    @classmethod
    def _load_profile(cls, value: Any) -> Any:
        return load_profile(value.strip() or None) if isinstance(value, str) else value

    @field_validator("naming", mode="before")
    @classmethod
    def _load_naming(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return None
        try:
            return CrmNaming.loads(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a valid naming ({exc}); fix it or unset it for the default names "
                             "(docs/mappings.md)") from None

    @classmethod
    def load(cls, environ: Mapping[str, str], prefix: str = "") -> CrmSettings:
        """The CRM settings of the tenant with `prefix`; ConfigError naming the variables otherwise."""
        settings, missing, problems = cls.read(environ, prefix)
        _raise(missing, problems)
        assert settings is not None
        return settings

    @classmethod
    def _profile(cls, environ: Mapping[str, str], prefix: str) -> Profile:
        return load_profile((environ.get(cls.var("profile", prefix)) or "").strip() or None)

    @staticmethod
    def _renamed(profile: Profile, prefix: str) -> dict[str, str]:
        """The variables `profile` names for the URL and the token, where they are not the usual ones."""
        return {field: prefix + name for field, name, default in (
            ("base_url", profile.base_url_env, "CRM_BASE_URL"), ("api_token", profile.token_env, "CRM_API_TOKEN"))
                if name != default}

    @classmethod
    def variables(cls, environ: Mapping[str, str] | None = None, prefix: str = "") -> dict[str, str]:
        """The variables that hold the URL and the token (`base_url`, `api_token`) of the tenant with
        `prefix`, as its CRM profile names them; the usual names when the profile cannot be loaded."""
        environ = os.environ if environ is None else environ
        try:
            profile: Profile | None = cls._profile(environ, prefix)
        except ProfileError:
            profile = None
        return cls.names(profile, prefix)

    @classmethod
    def names(cls, profile: Profile | None, prefix: str = "") -> dict[str, str]:
        """`variables` for a profile already loaded (None: the usual names)."""
        renamed = cls._renamed(profile, prefix) if profile is not None else {}
        return {field: renamed.get(field) or cls.var(field, prefix) for field in ("base_url", "api_token")}

    @classmethod
    def read(cls, environ: Mapping[str, str], prefix: str = "") -> tuple[CrmSettings | None, list[str], list[str]]:
        """As `load`, but returns (settings or None, missing variables, problems)."""
        try:  # the profile first: it may name other variables for the URL and token
            profile = cls._profile(environ, prefix)
        except ProfileError as exc:
            return None, [], [_prefixed(str(exc), prefix)]
        names = cls._renamed(profile, prefix)
        settings, missing, problems = cls._read(environ, prefix, names, profile=profile)
        if settings is not None and settings.naming is not None and not profile.contract_shaped:
            return None, [], [f"{cls.var('naming', prefix)}: applies to contract-shaped profiles only; put the "
                              f"renames into the `fields` of profile {profile.name!r} (docs/custom-crm.md), or unset it"]
        return settings, missing, problems


class WaveSettings(_Section):
    """Wave's variables: `WAVE_GRAPHQL_URL`, `WAVE_API_TOKEN`, optional `WAVE_BUSINESS_ID`,
    `WAVE_REQUESTS_PER_MINUTE` (60 by default; 0 = no limit)."""

    model_config = SettingsConfigDict(env_prefix="WAVE_")

    graphql_url: str
    api_token: SecretStr
    business_id: str | None = None
    requests_per_minute: int | None = WAVE_DEFAULT_RPM

    @classmethod
    def read(cls, environ: Mapping[str, str], prefix: str = "") -> tuple[WaveSettings | None, list[str], list[str]]:
        """(settings or None, missing variables, problems) of the tenant with `prefix`."""
        return cls._read(environ, prefix, {})


class AppSettings(_Section):
    """The variables shared by every tenant: `CRM_WAVE_POLICY` (the who-wins policy file; default
    `<data dir>/policy.toml`, see `crm_wave/mapping/policy.py`) and `CRM_WAVE_DEBUG` (1: tracebacks
    instead of one-line errors). `CRM_WAVE_DATA_DIR` is `data_root`'s."""

    model_config = SettingsConfigDict(env_prefix="CRM_WAVE_")

    policy: Path | None = None
    debug: bool = False

    @field_validator("debug", mode="before")
    @classmethod
    def _valid_flag(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() not in _FLAGS:
            raise ValueError(f"{value!r} is not a yes/no value; set it to 1 or 0 (true/false, yes/no, on/off)")
        return value.strip() if isinstance(value, str) else value

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> AppSettings:
        """The shared settings from `environ` (default: the process environment); ConfigError naming the variable."""
        environ = os.environ if environ is None else environ
        # Read again only when one of its variables changed: every global step asks (10 ms a time).
        return _app_settings(tuple(sorted((k, v) for k, v in environ.items() if k.lower().startswith("crm_wave_"))))


@functools.lru_cache(maxsize=8)
def _app_settings(variables: tuple[tuple[str, str], ...]) -> AppSettings:
    settings, missing, problems = AppSettings._read(dict(variables), "", {})
    _raise(missing, problems)
    assert settings is not None
    return settings


_FLAGS = {"1", "0", "true", "false", "yes", "no", "on", "off"}


def _prefixed(text: str, prefix: str) -> str:
    """A message naming `CRM_PROFILE` as the tenant spells it."""
    return text.replace("CRM_PROFILE", prefix + "CRM_PROFILE", 1) if prefix else text


def _raise(missing: list[str], problems: list[str]) -> None:
    if missing:
        raise ConfigError(f"missing environment variable(s): {', '.join(missing)}; set them (see the "
                          "README's Configuration)")
    if problems:
        raise ConfigError(problems[0])


class Settings(BaseModel):
    """One tenant's endpoints, credentials and data directory. `repr` never shows a token."""

    model_config = ConfigDict(frozen=True)

    crm: CrmSettings
    wave: WaveSettings
    data_dir: Path = Path("data")
    env_prefix: str = ""

    @property
    def db_path(self) -> Path:
        """The live DuckDB file."""
        return self.data_dir / DB_FILE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, env_prefix: str = "",
                 data_dir: Path | None = None) -> Settings:
        """The settings of the tenant whose variables start with `env_prefix` ("" for the default
        tenant), from `environ` (default: the process environment). `data_dir` defaults to the data
        root (`CRM_WAVE_DATA_DIR`). ConfigError names every missing variable, or the first invalid one."""
        environ = os.environ if environ is None else environ
        crm, crm_missing, crm_problems = CrmSettings.read(environ, env_prefix)
        wave, wave_missing, wave_problems = WaveSettings.read(environ, env_prefix)
        _raise(crm_missing + wave_missing, crm_problems + wave_problems)
        assert crm is not None and wave is not None
        return cls(crm=crm, wave=wave, data_dir=data_root(environ) if data_dir is None else data_dir,
                   env_prefix=env_prefix)
