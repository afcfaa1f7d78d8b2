"""Every command in the runbook's and README's code blocks (and the demo's closing hints) runs.

The `crm-wave ...` lines of every ```sh block are run in-process against a synced data directory
(both simulators, a few records of each kind), in the order the document gives them; the Python
blocks run as written with `data/` pointing at that directory. A command whose example holds a
placeholder (`…`) or an alternative (`csv|json`) cannot run as written and is left out; a long
running one (`sync --every`) too. A command passes with exit code 0, or the code the document
itself gives it (`plan` 2 when writes are planned; `deadletters retry <id>` 10 for an id that is
not a dead letter here).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from crm_wave.cli import main
from crm_wave.store import Store
from crm_wave.systems.crm.client import CrmClient
from crm_wave.systems.serve import serve_in_thread
from crm_wave.systems.wave.client import WaveClient
from crm_wave.tools.demo import next_steps

from .rig import Rig

ROOT = Path(__file__).parents[1]
DOCS = [ROOT / "docs" / "runbook.md", ROOT / "README.md"]
#: Exit codes a documented command may end with besides 0, and why.
ALLOWED = {
    ("plan",): {2},                       # writes are planned
    ("deadletters", "retry"): {10},       # the example's id is no dead letter in this data
    ("conflicts", "resolve"): {2},        # the example's id is no open conflict in this data
}


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced code block."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def commands(body: str) -> list[str]:
    """The `crm-wave ...` commands of a shell block, a quoted SQL spanning lines joined to one."""
    out, pending = [], ""
    for line in body.splitlines():
        if pending:
            pending += "\n" + line
        elif line.startswith("crm-wave "):
            pending = line
        else:
            continue
        try:
            shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on
            continue
        out.append(pending)
        pending = ""
    assert not pending, f"unterminated command: {pending}"
    return out


def runnable(command: str) -> bool:
    """False for examples that cannot run as written (placeholders, alternatives, endless loops)."""
    argv = shlex.split(command, comments=True)
    return "…" not in command and not any("|" in a and " " not in a for a in argv) and "--every" not in argv


def documented() -> list[tuple[str, str]]:
    """(document, command) in document order."""
    found = []
    for doc in DOCS:
        for lang, body in code_blocks(doc.read_text()):
            if lang in ("sh", ""):
                found += [(doc.name, c) for c in commands(body)]
    return found


def test_the_extraction_finds_the_runbook_commands():
    cmds = [c for _, c in documented()]
    assert any(c.startswith("crm-wave sql \"SELECT entity, global_id, field") and "FROM field_conflicts" in c
               for c in cmds)  # a two-line SQL is joined
    assert sum(runnable(c) for c in cmds) >= 15
    assert not runnable("crm-wave sql --format csv|json \"SELECT …\"")


@pytest.fixture(scope="module")
def synced_dir(tmp_path_factory):
    """Both simulators and a data directory after a sync of a few customers, products and an order
    on both sides: set up once for the module (a sync through Dagster is most of each test's cost).
    The tests run the documents' commands one after another on it, as a reader of the runbook does
    on a live system, so each command also meets the state the ones before it left."""
    from crm_wave.systems.crm.profile import load_profile
    from crm_wave.systems.crm.simulator import create_app as crm_app
    from crm_wave.systems.wave.simulator import create_app as wave_app

    from .conftest import CRM_TOKEN, WAVE_TOKEN

    data = tmp_path_factory.mktemp("doc-data")
    sims = tmp_path_factory.mktemp("doc-sims")
    with serve_in_thread(crm_app(db_path=sims / "crm.sqlite3", token=CRM_TOKEN, style="contract")) as crm_base, \
            serve_in_thread(wave_app(db_path=sims / "wave.sqlite3", token=WAVE_TOKEN)) as wave_base, \
            pytest.MonkeyPatch.context() as mp:
        crm_url, wave_url = f"{crm_base}/api/v1", f"{wave_base}/graphql/public"
        for key, value in {"CRM_BASE_URL": crm_url, "CRM_API_TOKEN": CRM_TOKEN, "CRM_PROFILE": "contract",
                           "WAVE_GRAPHQL_URL": wave_url, "WAVE_API_TOKEN": WAVE_TOKEN,
                           "CRM_WAVE_DATA_DIR": str(data), "WAVE_REQUESTS_PER_MINUTE": "0"}.items():
            mp.setenv(key, value)
        with CrmClient(base_url=crm_url, token=CRM_TOKEN, profile=load_profile("contract")) as crm, \
                WaveClient(url=wave_url, token=WAVE_TOKEN) as wave:
            rig = Rig(crm=crm, wave=wave, store=Store(data / "crm_wave.duckdb"), crm_db=sims / "crm.sqlite3")
            c = rig.crm_create("customers", {"Type": "organization", "Name": "Doc AS", "Email": "doc@x.example",
                                             "Phone": "+47 22 00 00 01"})
            p = rig.crm_create("products", {"Name": "Doc widget", "UnitPrice": "12.50"})
            rig.crm_create("orders", {"OrderNumber": "SO-9001", "CustomerId": c["Id"], "OrderDate": "2026-01-02",
                                      "DueDate": "2026-01-16", "Currency": "NOK",
                                      "Lines": [{"ProductId": p["Id"], "Quantity": "2", "UnitPrice": "12.50"}]})
            rig.wave_write("customerCreate", {"businessId": wave.business_id, "name": "Wave Only AS",
                                              "email": "wave@x.example"})
            assert main(["sync", "--once", "--quiet"]) == 0
        yield data, dict(os.environ)


@pytest.fixture
def synced(synced_dir, monkeypatch):
    """The module's synced data directory, with its variables set for this test."""
    data, environ = synced_dir
    for key in ("CRM_BASE_URL", "CRM_API_TOKEN", "CRM_PROFILE", "WAVE_GRAPHQL_URL", "WAVE_API_TOKEN",
                "CRM_WAVE_DATA_DIR", "WAVE_REQUESTS_PER_MINUTE"):
        monkeypatch.setenv(key, environ[key])
    return data


def _run(command: str, capsys) -> tuple[int, str]:
    argv = shlex.split(command, comments=True)[1:]
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_every_documented_command_runs(synced, capsys):
    failures = []
    ran = 0
    for doc, command in documented():
        if not runnable(command):
            continue
        ran += 1
        code, output = _run(command, capsys)
        argv = shlex.split(command, comments=True)[1:]
        allowed = {0} | ALLOWED.get(tuple(argv[:1]), set()) | ALLOWED.get(tuple(argv[:2]), set())
        if code not in allowed:
            failures.append(f"{doc}: `{' '.join(command.split())}` exited {code}: {output.strip()[-300:]}")
    assert ran >= 15
    assert not failures, "\n".join(failures)


def test_documented_python_blocks_run(synced, tmp_path):
    blocks = []
    for doc in DOCS:
        for lang, body in code_blocks(doc.read_text()):
            if lang == "sh" and "<<'EOF'" in body:  # a heredoc of Python, as in "Reset a cursor"
                blocks.append(body.split("<<'EOF'\n", 1)[1].rsplit("EOF", 1)[0])
    assert blocks
    work = tmp_path / "cwd"
    work.mkdir()
    (work / "data").symlink_to(synced)
    for code in blocks:
        done = subprocess.run([sys.executable, "-"], input=code, cwd=work, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-1500:]


def test_the_demo_hints_run(synced, capsys):
    hints = [line.strip() for line in next_steps(synced).splitlines() if ".venv/bin/crm-wave " in line]
    assert {h.split(".venv/bin/crm-wave ")[1].split()[0] for h in hints} >= {"sql", "deadletters", "confirm",
                                                                             "plan", "deletes"}
    for hint in hints:
        command = "crm-wave " + hint.split(".venv/bin/crm-wave ", 1)[1]
        # the description after the command is not part of it
        argv = shlex.split(command)
        argv = argv[: 3 if argv[1] == "sql" else 2]
        code = main(argv[1:])
        out = capsys.readouterr()
        assert code in ({0, 2} if argv[1] == "plan" else {0}), (hint, out.err)
