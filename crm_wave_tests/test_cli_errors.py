"""Every CLI failure a person meets: one line on stderr saying what is wrong and what to do,
a distinct exit code per kind, no traceback unless --debug."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crm_wave.cli import main
from crm_wave.cli_errors import EXIT_CODES


@pytest.fixture
def configured(crm_sim, wave_sim, tmp_path, monkeypatch):
    """The default tenant's variables pointing at both (empty) simulators, data under tmp_path."""
    for k, v in {"CRM_BASE_URL": crm_sim.url, "CRM_API_TOKEN": crm_sim.token, "WAVE_GRAPHQL_URL": wave_sim.url,
                 "WAVE_API_TOKEN": wave_sim.token, "CRM_WAVE_DATA_DIR": str(tmp_path),
                 "WAVE_REQUESTS_PER_MINUTE": "0"}.items():
        monkeypatch.setenv(k, v)
    return crm_sim, wave_sim


@pytest.fixture
def bare(tmp_path, monkeypatch):
    """No variable set, a fresh data directory."""
    for k in ("CRM_BASE_URL", "CRM_API_TOKEN", "WAVE_GRAPHQL_URL", "WAVE_API_TOKEN", "CRM_NAMING", "CRM_WAVE_DEBUG"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CRM_WAVE_DATA_DIR", str(tmp_path / "fresh"))
    return tmp_path / "fresh"


def _fails(capsys, argv: list[str], kind: str, *needles: str) -> str:
    """Run `argv`; it must exit with `kind`'s code and print one line naming every needle."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == EXIT_CODES[kind], err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"crm-wave {argv[0]}: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_exit_codes_are_distinct_and_documented() -> None:
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text()
    for kind, code in EXIT_CODES.items():
        assert f"| {code} | {kind} |" in readme, f"exit code {code} ({kind}) is not in the README's table"


def test_fresh_data_directory(bare, capsys):
    _fails(capsys, ["sql", "SELECT 1"], "no_data", str(bare / "snapshots"), "crm-wave sync --once")
    for argv in (["deadletters"], ["deletes"], ["confirm"]):  # DuckDB-only commands need no API variables
        _fails(capsys, argv, "no_data", str(bare), "crm-wave sync --once")
    assert not bare.exists()  # nothing was created on the way


def test_missing_variables_are_named(bare, capsys):
    _fails(capsys, ["plan"], "config", "CRM_BASE_URL", "CRM_API_TOKEN", "WAVE_GRAPHQL_URL", "WAVE_API_TOKEN")
    _fails(capsys, ["sync", "--once"], "config", "WAVE_API_TOKEN")


def test_unknown_tenant(bare, capsys):
    _fails(capsys, ["sql", "SELECT 1", "--tenant", "nope"], "unknown_tenant", "'nope'", "crm-wave tenants add nope")


def test_url_without_a_scheme_names_the_variable(configured, monkeypatch, capsys):
    monkeypatch.setenv("CRM_BASE_URL", "localhost:8701/api/v1")
    _fails(capsys, ["sync", "--once"], "config", "CRM_BASE_URL", "'localhost:8701/api/v1'", "http://localhost:8701")


def test_bad_crm_naming_names_the_variable(configured, monkeypatch, capsys):
    monkeypatch.setenv("CRM_NAMING", '{"bogus": 1}')
    _fails(capsys, ["plan"], "config", "CRM_NAMING", "bogus")
    monkeypatch.setenv("CRM_NAMING", "not = [toml")
    _fails(capsys, ["plan"], "config", "CRM_NAMING")


def test_wrong_token_is_one_line_even_for_a_sync(configured, monkeypatch, capsys):
    monkeypatch.setenv("WAVE_API_TOKEN", "wrong")
    _fails(capsys, ["sync", "--once", "--quiet"], "auth", "Wave refused the token", "WAVE_API_TOKEN")
    monkeypatch.setenv("WAVE_API_TOKEN", configured[1].token)
    monkeypatch.setenv("CRM_API_TOKEN", "wrong")
    _fails(capsys, ["sync", "--once"], "auth", "the CRM refused the token", "CRM_API_TOKEN")


def test_a_crm_profile_naming_other_variables_gets_errors_naming_those(configured, monkeypatch, capsys, tmp_path):
    """A profile may keep the CRM's URL and token in other variables: the errors name those, never CRM_API_TOKEN."""
    crm_sim, _ = configured
    profile = tmp_path / "mine.toml"
    profile.write_text((Path(__file__).parents[1] / "crm_wave/systems/crm/profiles/contract.toml").read_text()
                       .replace('name = "contract"', 'name = "mine"\nbase_url_env = "MY_CRM_URL"\ntoken_env = "MY_CRM_KEY"', 1))
    monkeypatch.setenv("CRM_PROFILE", str(profile))
    monkeypatch.setenv("MY_CRM_URL", crm_sim.url)
    monkeypatch.setenv("MY_CRM_KEY", "wrong")
    monkeypatch.setenv("CRM_API_TOKEN", crm_sim.token)  # set, but not the variable this profile reads
    line = _fails(capsys, ["sync", "--once"], "auth", "the CRM refused the token in MY_CRM_KEY")
    assert "CRM_API_TOKEN" not in line and "wrong" not in line
    monkeypatch.setenv("MY_CRM_KEY", crm_sim.token)
    monkeypatch.setenv("MY_CRM_URL", "http://127.0.0.1:9/api/v1")  # nothing listens
    line = _fails(capsys, ["sync", "--once"], "unreachable", "http://127.0.0.1:9/api/v1", "check MY_CRM_URL")
    assert "CRM_BASE_URL" not in line


def test_a_bad_debug_flag_is_one_line_naming_it(bare, monkeypatch, capsys):
    monkeypatch.setenv("CRM_WAVE_DEBUG", "maybe")
    assert main(["plan"]) == EXIT_CODES["config"]
    err = capsys.readouterr().err.strip()
    assert err == ("crm-wave: CRM_WAVE_DEBUG: 'maybe' is not a yes/no value; set it to 1 or 0 "
                   "(true/false, yes/no, on/off)")
    monkeypatch.setenv("CRM_WAVE_DEBUG", "0")  # off: the one-line error, no traceback
    _fails(capsys, ["plan"], "config", "missing environment variable")
    monkeypatch.setenv("CRM_WAVE_DEBUG", "1")
    with pytest.raises(Exception, match="missing environment variable"):
        main(["plan"])


def test_unreachable_host_is_reported_at_once_with_its_url(configured, monkeypatch, capsys):
    monkeypatch.setenv("WAVE_GRAPHQL_URL", "http://no-such-host.invalid/graphql/public")
    started = time.monotonic()
    _fails(capsys, ["plan"], "unreachable", "http://no-such-host.invalid/graphql/public", "WAVE_GRAPHQL_URL",
           "does not resolve")
    assert time.monotonic() - started < 10  # not 8 attempts with backoff


def test_refused_connection_names_the_url(configured, monkeypatch, capsys):
    monkeypatch.setenv("CRM_BASE_URL", "http://127.0.0.1:9/api/v1")  # the discard port: nothing listens
    _fails(capsys, ["sync", "--once"], "unreachable", "http://127.0.0.1:9/api/v1", "CRM_BASE_URL")


def test_sql_errors(configured, capsys):
    assert main(["sync", "--once", "--quiet"]) == 0
    capsys.readouterr()
    _fails(capsys, ["sql", "SELEC 1"], "bad_query", "SELEC", "SHOW TABLES")
    _fails(capsys, ["sql", "SELECT * FROM wave_order_share"], "bad_query", "wave_order_share")
    _fails(capsys, ["sql", "DELETE FROM links"], "bad_query", "read-only")
    _fails(capsys, ["sql", "SELECT 1", "--at", "yesterday"], "usage", "'yesterday'", "ISO 8601")
    _fails(capsys, ["sql", "SELECT 1", "--at", "2000-01-01"], "no_data", "pick a later --at")


def test_debug_shows_the_traceback(bare, capsys):
    with pytest.raises(Exception, match="missing environment variable"):
        main(["--debug", "plan"])
    with pytest.raises(Exception, match="missing environment variable"):
        main(["plan", "--debug"])
