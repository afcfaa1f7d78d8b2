"""`python -m crm_wave.bench.stream_hang` repeats a large first collect (the statement whose streamed fetch
DuckDB 1.5.6 could spin in forever) and says whether one hung; here it runs once, as the script does."""

from __future__ import annotations

import pytest

from crm_wave.bench import stream_hang
from crm_wave.store.datasets import FILES_FROM


def test_a_large_collect_repeated_reports_no_hang(capsys: pytest.CaptureFixture[str]) -> None:
    assert stream_hang.main(["--repeats", "2", "--records", str(FILES_FROM), "--limit", "120"]) == 0
    out = capsys.readouterr().out
    assert f"2 collects of {FILES_FROM:,} records" in out and "no hang" in out
