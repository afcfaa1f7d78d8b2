"""`crm-wave demo` (and `crm-wave dev`) writes where the other commands read: `--data-dir`, else `CRM_WAVE_DATA_DIR`, else
`data`; its closing hints name the directory it used, and say `CRM_WAVE_DATA_DIR=` when the caller's
commands would read another one. (The whole demo takes minutes of CPU: `make demo` runs it; here the
choice of directory the command makes, and the hints the demo prints with it.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from crm_wave.cli import build_parser
from crm_wave.tools.demo import data_dir_option, next_steps


def _dir(argv: list[str], environ: dict[str, str], command: str = "demo") -> Path:
    return data_dir_option(build_parser().parse_args([command, *argv]).data_dir, environ)


@pytest.mark.parametrize("command", ["demo", "dev"])
def test_demo_and_dev_use_crm_wave_data_dir_unless_data_dir_is_given(tmp_path: Path, command: str) -> None:
    env = {"CRM_WAVE_DATA_DIR": str(tmp_path / "from-env")}
    assert _dir([], env, command) == tmp_path / "from-env"
    assert _dir(["--data-dir", str(tmp_path / "flag")], env, command) == tmp_path / "flag"  # the flag wins
    assert _dir([], {}, command) == Path("data")
    assert _dir([], {"CRM_WAVE_DATA_DIR": ""}, command) == Path("data")  # empty = unset


def test_the_hints_name_the_directory_the_demo_used(tmp_path: Path) -> None:
    used = tmp_path / "demo data"
    same = next_steps(used, caller_root=used)  # CRM_WAVE_DATA_DIR already points there
    assert f"the data directory {used}/" in same and "CRM_WAVE_DATA_DIR=" not in same
    other = next_steps(used, caller_root=Path("data"))  # --data-dir elsewhere: each hint must say where
    hints = [line for line in other.splitlines() if ".venv/bin/crm-wave " in line]
    assert hints and all(f"CRM_WAVE_DATA_DIR='{used}' .venv/bin/crm-wave " in line for line in hints)
