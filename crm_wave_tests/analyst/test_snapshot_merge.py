"""Deltas merged into one (`segments.compact`) read as the chain they replace, whatever the edits were."""

from __future__ import annotations

from pathlib import Path

import duckdb
from hypothesis import given, settings, strategies as st

from crm_wave.analyst import segments
from crm_wave.analyst.segments import GONE, HASH, Segment

KEYS = ["a", "b", "c", "d"]
VALUES = ["1", "2"]
#: One edit: set key to a value (add, or change; the same content may come back after it was removed), or remove it.
EDITS = st.lists(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from([*VALUES, None])), max_size=4),
                 min_size=2, max_size=6)


def _write(con: duckdb.DuckDBPyConnection, path: Path, adds: list[tuple[str, str]], gone: list[int],
           ids: dict[tuple[str, str], int], *, base: bool) -> None:
    """A segment file as `export` writes one: the rows added with their hash, and (a delta) the hashes removed."""
    rows = [f"('{k}', '{v}', {ids[(k, v)]}::UBIGINT" + ("" if base else ", false") + ")" for k, v in adds]
    rows += [f"(NULL, NULL, {h}::UBIGINT, true)" for h in gone]
    cols = f"k, v, {HASH}" + ("" if base else f", {GONE}")
    empty = f"SELECT NULL::VARCHAR AS k, NULL::VARCHAR AS v, 0::UBIGINT AS {HASH}" + ("" if base else f", false AS {GONE}")
    query = f"SELECT * FROM (VALUES {', '.join(rows)}) t({cols})" if rows else f"{empty} WHERE false"
    con.execute(f"COPY ({query}) TO '{path}' (FORMAT parquet)")


@settings(max_examples=60, deadline=None)
@given(EDITS)
def test_merged_deltas_read_as_the_chain(tmp_path_factory, rounds: list[list[tuple[str, str | None]]]) -> None:
    folder = tmp_path_factory.mktemp("segments")
    ids: dict[tuple[str, str], int] = {}
    live = {"a": "1", "b": "1"}
    con = duckdb.connect()
    for content in [(k, v) for k in KEYS for v in VALUES]:
        ids[content] = len(ids) + 1
    _write(con, folder / "base.parquet", sorted(live.items()), [], ids, base=True)
    chain = [Segment("t", "base.parquet", len(live), "base")]
    for i, edits in enumerate(rounds):
        before = dict(live)
        for key, value in edits:
            if value is None:
                live.pop(key, None)
            else:
                live[key] = value
        adds = sorted(set(live.items()) - set(before.items()))
        gone = sorted(ids[c] for c in set(before.items()) - set(live.items()))
        _write(con, folder / f"d{i}.parquet", adds, gone, ids, base=False)
        chain.append(Segment("t", f"d{i}.parquet", len(adds) + len(gone), "delta"))
    expected = sorted(live.items())
    assert sorted(con.execute(segments.view_sql(folder, chain, "k, v")).fetchall()) == expected
    con.execute(f"COPY ({segments._merged_deltas_sql(folder, chain[1:])}) TO '{folder / 'merged.parquet'}' (FORMAT parquet)")
    merged = Segment("t", "merged.parquet", 0, "delta")
    assert sorted(con.execute(segments.view_sql(folder, [chain[0], merged], "k, v")).fetchall()) == expected
    # Each row in it once: what the base lost and what is new since, nothing more.
    base = {("a", "1"), ("b", "1")}
    (n_add, n_gone), = con.execute(f"SELECT count(*) FILTER (NOT {GONE}), count(*) FILTER ({GONE}) "
                                   f"FROM '{folder / 'merged.parquet'}'").fetchall()
    assert (n_add, n_gone) == (len(set(live.items()) - base), len(base - set(live.items())))
    assert segments._net_delta_rows(con, folder, chain[1:]) == n_add + n_gone
