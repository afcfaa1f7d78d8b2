"""The typed per-tenant settings: prefixed variables, secrets hidden, one-line errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_wave.config.settings import AppSettings, ConfigError, CrmSettings, Settings, data_root

FULL = {"CRM_BASE_URL": "http://crm.test/api/v1", "CRM_API_TOKEN": "crm-s3cret", "WAVE_GRAPHQL_URL": "http://wave.test/g",
        "WAVE_API_TOKEN": "wave-s3cret"}


def _acme(env: dict[str, str]) -> dict[str, str]:
    return {f"ACME_{k}": v for k, v in env.items()}


def test_typed_values_and_defaults(tmp_path: Path) -> None:
    s = Settings.from_env({**FULL, "CRM_REQUESTS_PER_MINUTE": "30", "WAVE_BUSINESS_ID": "B1",
                           "CRM_WAVE_DATA_DIR": str(tmp_path)})
    assert (s.crm.base_url, s.crm.requests_per_minute, s.crm.profile.name, s.crm.naming) == \
        ("http://crm.test/api/v1", 30, "contract", None)
    assert (s.wave.graphql_url, s.wave.business_id, s.wave.requests_per_minute) == ("http://wave.test/g", "B1", 60)
    assert s.crm.api_token.get_secret_value() == "crm-s3cret" and s.db_path == tmp_path / "crm_wave.duckdb"
    assert Settings.from_env({**FULL, "WAVE_REQUESTS_PER_MINUTE": "0"}).wave.requests_per_minute is None  # 0 = none
    assert Settings.from_env({**FULL, "WAVE_BUSINESS_ID": ""}).wave.business_id is None  # empty = unset


def test_tokens_never_in_repr_str_or_errors() -> None:
    s = Settings.from_env(FULL)
    for text in (repr(s), str(s), repr(s.crm), s.model_dump_json()):
        assert "s3cret" not in text
    with pytest.raises(ConfigError) as err:
        Settings.from_env({**FULL, "WAVE_GRAPHQL_URL": "wave.test"})
    assert "s3cret" not in str(err.value)


def test_a_tenant_reads_only_its_prefixed_variables() -> None:
    env = {**FULL, **_acme({**FULL, "CRM_API_TOKEN": "acme-crm", "WAVE_REQUESTS_PER_MINUTE": "7"})}
    acme = Settings.from_env(env, env_prefix="ACME_", data_dir=Path("d/tenants/acme"))
    assert acme.crm.api_token.get_secret_value() == "acme-crm" and acme.wave.requests_per_minute == 7
    assert Settings.from_env(env).crm.api_token.get_secret_value() == "crm-s3cret"
    with pytest.raises(ConfigError, match=r"missing environment variable\(s\): ACME_WAVE_API_TOKEN;"):
        Settings.from_env({**FULL, **_acme({k: v for k, v in FULL.items() if k != "WAVE_API_TOKEN"})},
                          env_prefix="ACME_")  # the default tenant's WAVE_API_TOKEN is not borrowed


def test_every_missing_variable_is_named_in_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env({}, env_prefix="ACME_")
    assert str(err.value) == ("missing environment variable(s): ACME_CRM_BASE_URL, ACME_CRM_API_TOKEN, "
                              "ACME_WAVE_GRAPHQL_URL, ACME_WAVE_API_TOKEN; set them (see the README's Configuration)")


def test_naming_with_a_non_contract_profile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ACME_CRM_NAMING: applies to contract-shaped profiles only; .* 'paged'"):
        Settings.from_env(_acme({**FULL, "CRM_PROFILE": "paged", "CRM_NAMING": '{"fields": {"Email": "mail"}}'}),
                          env_prefix="ACME_")


@pytest.mark.parametrize(("key", "value", "needles"), [
    ("CRM_BASE_URL", "localhost:8701/api/v1", ["ACME_CRM_BASE_URL='localhost:8701/api/v1'", "http://localhost:8701"]),
    ("WAVE_GRAPHQL_URL", "http:///graphql", ["ACME_WAVE_GRAPHQL_URL='http:///graphql' names no host"]),
    ("WAVE_REQUESTS_PER_MINUTE", "1.5", ["ACME_WAVE_REQUESTS_PER_MINUTE: expected a whole number", "'1.5'"]),
    ("CRM_REQUESTS_PER_MINUTE", "-5", ["ACME_CRM_REQUESTS_PER_MINUTE: expected a whole number", "'-5'"]),
    ("CRM_NAMING", '{"bogus": 1}', ["ACME_CRM_NAMING: not a valid naming", "bogus"]),
    ("CRM_PROFILE", "soap", ["ACME_CRM_PROFILE: 'soap' is neither a shipped profile"]),
])
def test_an_invalid_variable_is_named_as_the_tenant_spells_it(key: str, value: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_env(_acme({**FULL, key: value}), env_prefix="ACME_")
    assert "\n" not in str(err.value)
    for needle in needles:
        assert needle in str(err.value)


def test_a_profile_naming_other_variables_makes_them_required(tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text((Path(__file__).parents[1] / "crm_wave/systems/crm/profiles/contract.toml").read_text()
                       .replace('name = "contract"', 'name = "mine"\ntoken_env = "MY_CRM_KEY"', 1))
    env = {**FULL, "CRM_PROFILE": str(profile)}
    with pytest.raises(ConfigError, match=r"missing environment variable\(s\): MY_CRM_KEY;"):
        CrmSettings.load(env)
    crm = CrmSettings.load({**env, "MY_CRM_KEY": "k"})
    assert crm.profile.name == "mine" and crm.api_token.get_secret_value() == "k"


def test_the_shared_variables_are_typed_and_a_bad_one_is_named_in_one_line(tmp_path: Path) -> None:
    assert AppSettings.load({}) == AppSettings(policy=None, debug=False)
    shared = AppSettings.load({"CRM_WAVE_POLICY": str(tmp_path / "p.toml"), "CRM_WAVE_DEBUG": "1",
                               "CRM_WAVE_DATA_DIR": "elsewhere", "CRM_WAVE_SNAPSHOT_KEEP": "x"})  # others: not its
    assert shared.policy == tmp_path / "p.toml" and shared.debug
    for off in ("0", "off", "False", " no ", ""):
        assert AppSettings.load({"CRM_WAVE_DEBUG": off}).debug is False, off
    with pytest.raises(ConfigError) as err:
        AppSettings.load({"CRM_WAVE_DEBUG": "maybe"})
    assert str(err.value).startswith("CRM_WAVE_DEBUG: 'maybe' is not a yes/no value") and "\n" not in str(err.value)


def test_the_variables_of_the_crm_are_the_ones_its_profile_names(tmp_path: Path) -> None:
    profile = tmp_path / "mine.toml"
    profile.write_text((Path(__file__).parents[1] / "crm_wave/systems/crm/profiles/contract.toml").read_text()
                       .replace('name = "contract"', 'name = "mine"\ntoken_env = "MY_CRM_KEY"', 1))
    assert CrmSettings.variables({}, "ACME_") == {"base_url": "ACME_CRM_BASE_URL", "api_token": "ACME_CRM_API_TOKEN"}
    assert CrmSettings.variables({"ACME_CRM_PROFILE": str(profile)}, "ACME_") == {
        "base_url": "ACME_CRM_BASE_URL", "api_token": "ACME_MY_CRM_KEY"}
    assert CrmSettings.variables({"CRM_PROFILE": "no-such-profile"})["api_token"] == "CRM_API_TOKEN"


def test_data_root_is_crm_wave_data_dir_or_data() -> None:
    assert data_root({}) == Path("data") and data_root({"CRM_WAVE_DATA_DIR": ""}) == Path("data")
    assert data_root({"CRM_WAVE_DATA_DIR": "/srv/crm"}) == Path("/srv/crm")


def test_the_ui_shows_the_data_roots_variable_and_no_secret(monkeypatch, tmp_path: Path) -> None:
    from dagster._core.remote_representation.external_data import ResourceConfigEnvVarSnap, RepositorySnap

    from crm_wave.definitions import defs

    monkeypatch.setenv("CRM_WAVE_DATA_DIR", str(tmp_path))
    for k, v in FULL.items():
        monkeypatch.setenv(k, v)
    snap = RepositorySnap.from_def(defs().get_repository_def())
    (sync,) = [r for r in snap.resources if r.name == "sync"]
    assert sync.configured_values == {"data_root": ResourceConfigEnvVarSnap(name="CRM_WAVE_DATA_DIR")}
    assert "s3cret" not in str(snap.resources)
