"""docs/mappings.md is generated from crm_wave/mapping/flows.py and must not drift."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from crm_wave.mapping.docs import field_row, main, render_mappings_markdown, table_header
from crm_wave.mapping.flows import FLOWS, Flow

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mappings.md"
REGENERATE = ".venv/bin/python -m crm_wave.mapping.docs > docs/mappings.md"


def _section(text: str, number: int, flow: Flow) -> str:
    """The text of section `number` (from its heading to the next `## `)."""
    start = text.index(f"## {number}. {flow.title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def _table_rows(section: str) -> list[str]:
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    assert lines[1] == "|---|---|---|", lines[:2]
    return lines[2:]  # without header and separator


def test_committed_doc_matches_render() -> None:
    assert DOC.read_text(encoding="utf-8") == render_mappings_markdown(), (
        f"docs/mappings.md drifted from crm_wave/mapping/flows.py; regenerate with: {REGENERATE}"
    )


def test_header_says_generated() -> None:
    first = render_mappings_markdown().splitlines()[0]
    assert "GENERATED" in first and "python -m crm_wave.mapping.docs > docs/mappings.md" in first


def test_every_field_map_is_a_row_of_its_flow() -> None:
    text = render_mappings_markdown()
    for number, flow in enumerate(FLOWS, start=1):
        section = _section(text, number, flow)
        assert table_header(flow) in section
        rows = _table_rows(section)
        assert rows == [field_row(fm) for fm in flow.fields], flow.key
        for fm, row in zip(flow.fields, rows, strict=True):
            crm, wave, wave_type = (c.strip() for c in row.strip("|").split(" | "))
            assert (fm.crm_label or f"`{fm.name}`") in crm
            assert (fm.wave_label or f"`{fm.wave}`") in wave
            assert f"`{fm.wave_type.split(' ')[0]}`" in wave_type
            assert ("one-way, Wave -> CRM" in crm) == (fm.direction == "wave_to_crm")
            if fm.note:
                assert fm.note in row
            if not fm.wave_label and fm.inputs != (fm.wave,):
                assert all(f"`{i}`" in wave for i in fm.inputs)
        for key in flow.merge_keys:
            assert f"`{key.crm}` = `{key.wave}`" in section
        for note in flow.notes:
            assert note in section
    assert "## Rules for every flow" in text


def test_changing_a_field_map_changes_the_output() -> None:
    flow = FLOWS[0]
    old = flow.fields[1]
    new = dataclasses.replace(old, wave="customerCode", wave_type="ID!")
    changed = dataclasses.replace(flow, fields=(flow.fields[0], new, *flow.fields[2:]))
    flows = (changed, *FLOWS[1:])
    before, after = render_mappings_markdown(FLOWS), render_mappings_markdown(flows)
    assert before != after
    assert field_row(new) in after and field_row(new) not in before
    assert DOC.read_text(encoding="utf-8") != after  # so the drift test above would fail
    # The module-level FLOWS is untouched (the replace worked on copies).
    assert render_mappings_markdown() == before


def test_changing_direction_or_dropping_a_row_changes_the_output() -> None:
    order = next(f for f in FLOWS if f.key == "order")
    i = next(i for i, fm in enumerate(order.fields) if fm.direction == "wave_to_crm")
    two_way = dataclasses.replace(order.fields[i], direction="both")
    flipped = dataclasses.replace(order, fields=(*order.fields[:i], two_way, *order.fields[i + 1 :]))
    dropped = dataclasses.replace(order, fields=order.fields[:-1])
    base = render_mappings_markdown()
    for variant in (flipped, dropped):
        flows = tuple(variant if f.key == "order" else f for f in FLOWS)
        assert render_mappings_markdown(flows) != base


def test_check_mode(tmp_path: Path, capsys) -> None:
    assert main(["--check", str(DOC)]) == 0
    stale = tmp_path / "mappings.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("| `Email` | `email` |", "| `Email` | `mail` |"))
    assert main(["--check", str(stale)]) == 1
    out = capsys.readouterr().out
    assert "-| `Email` | `mail` |" in out and "+| `Email` | `email` |" in out


def test_module_runs_as_script(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "crm_wave.mapping.docs"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert run.stdout == render_mappings_markdown()
    stale = tmp_path / "mappings.md"
    stale.write_text(run.stdout.replace("`String!`", "`String`", 1))
    bad = subprocess.run(
        [sys.executable, "-m", "crm_wave.mapping.docs", "--check", str(stale)], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 1 and bad.stdout.startswith("---")


def test_render_is_pure() -> None:
    code = (
        "import sys; from crm_wave.mapping.docs import render_mappings_markdown; render_mappings_markdown(); "
        "bad = [m for m in ('dagster', 'httpx', 'duckdb', 'polars') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
