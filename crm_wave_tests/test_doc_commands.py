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

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from crm_wave.cli import main
from crm_wave.tools.demo import next_steps

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


@pytest.fixture
def synced(rig, sim_env, tmp_path):
    """A data directory after a sync of a few customers, products and an order on both sides."""
    c = rig.crm_create("customers", {"Type": "organization", "Name": "Doc AS", "Email": "doc@x.example",
                                     "Phone": "+47 22 00 00 01"})
    p = rig.crm_create("products", {"Name": "Doc widget", "UnitPrice": "12.50"})
    rig.crm_create("orders", {"OrderNumber": "SO-9001", "CustomerId": c["Id"], "OrderDate": "2026-01-02",
                              "DueDate": "2026-01-16", "Currency": "NOK",
                              "Lines": [{"ProductId": p["Id"], "Quantity": "2", "UnitPrice": "12.50"}]})
    biz = rig.wave.business_id
    rig.wave_write("customerCreate", {"businessId": biz, "name": "Wave Only AS", "email": "wave@x.example"})
    assert main(["sync", "--once", "--quiet"]) == 0
    return tmp_path


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
