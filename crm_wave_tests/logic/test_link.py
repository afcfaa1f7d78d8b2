"""`link_records` against a plain reading of its rule: live records without a counterpart pair up by each merge
key in turn, the records sharing a key value in id order; the rest get a global id of their own."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import polars as pl
from hypothesis import given, settings, strategies as st

from crm_wave.logic.link import LINK_SCHEMA, link_records

KEYS = [("_kc_Email", "_kw_Email"), ("_kc_Number", "_kw_Number")]


def _reference(entity: str, links: list[tuple[str, str | None, str | None]], crm: list[dict[str, Any]],
               wave: list[dict[str, Any]]) -> tuple[set[tuple[str, str | None, str | None, str]], list[str]]:
    by_crm = {c: (g, w) for g, c, w in links if c is not None}
    by_wave = {w: (g, c) for g, c, w in links if w is not None}
    crm_c = {r["crm_id"]: by_crm.get(r["crm_id"], (None, None))[0] for r in crm
             if not r["deleted"] and by_crm.get(r["crm_id"], (None, None))[1] is None}
    wave_c = {r["wave_id"]: by_wave.get(r["wave_id"], (None, None))[0] for r in wave
              if not r["deleted"] and by_wave.get(r["wave_id"], (None, None))[1] is None}
    rows = {**{("crm", r["crm_id"]): r for r in crm}, **{("wave", r["wave_id"]): r for r in wave}}
    out: set[tuple[str, str | None, str | None, str]] = set()
    dropped: list[str] = []
    for ck, wk in KEYS:
        left: dict[str, list[str]] = defaultdict(list)
        right: dict[str, list[str]] = defaultdict(list)
        for cid in sorted(crm_c):
            if (v := rows[("crm", cid)][ck]) is not None:
                left[v].append(cid)
        for wid in sorted(wave_c):
            if (v := rows[("wave", wid)][wk]) is not None:
                right[v].append(wid)
        for value, cids in left.items():
            for cid, wid in zip(cids, right.get(value, [])):
                g_crm, g_wave = crm_c.pop(cid), wave_c.pop(wid)
                out.add((g_crm or g_wave or f"crm-{entity}:{cid}", cid, wid, f"merge:{ck}={wk}"))
                if g_crm is not None and g_wave is not None:
                    dropped.append(g_wave)
    out |= {(f"crm-{entity}:{cid}", cid, None, "origin:crm") for cid, g in crm_c.items() if g is None}
    out |= {(f"wave-{entity}:{wid}", None, wid, "origin:wave") for wid, g in wave_c.items() if g is None}
    return out, dropped


_values = st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"]))


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[tuple[str, str | None, str | None]], list[dict], list[dict]]:
    n_crm, n_wave = draw(st.integers(0, 12)), draw(st.integers(0, 12))
    crm = [{"crm_id": f"C{i}", "deleted": draw(st.booleans()), "_kc_Email": draw(_values), "_kc_Number": draw(_values)}
           for i in draw(st.permutations(range(n_crm)))]
    wave = [{"wave_id": f"W{i:x}", "deleted": draw(st.booleans()), "_kw_Email": draw(_values),
             "_kw_Number": draw(_values)} for i in draw(st.permutations(range(n_wave)))]
    links: list[tuple[str, str | None, str | None]] = []
    crm_ids, wave_ids = [r["crm_id"] for r in crm], [r["wave_id"] for r in wave]
    for i in range(draw(st.integers(0, min(len(crm_ids), len(wave_ids), 4)))):  # whole links
        links.append((f"g{i}", crm_ids.pop(), wave_ids.pop()))
    for cid in crm_ids[:draw(st.integers(0, len(crm_ids)))]:  # half links a push has not completed
        links.append((f"crm-customer:{cid}", cid, None))
    for wid in wave_ids[:draw(st.integers(0, len(wave_ids)))]:
        links.append((f"wave-customer:{wid}", None, wid))
    return links, crm, wave


@settings(max_examples=300, deadline=None)
@given(_case())
def test_link_records_pairs_what_the_rule_pairs(case: tuple[list, list[dict], list[dict]]) -> None:
    links, crm, wave = case
    frame = pl.DataFrame([(g, c, w, "x") for g, c, w in links], schema=LINK_SCHEMA, orient="row")
    crm_frame = pl.DataFrame(crm, schema={"crm_id": pl.String, "deleted": pl.Boolean, "_kc_Email": pl.String,
                                          "_kc_Number": pl.String})
    wave_frame = pl.DataFrame(wave, schema={"wave_id": pl.String, "deleted": pl.Boolean, "_kw_Email": pl.String,
                                            "_kw_Number": pl.String})
    got, dropped = link_records("customer", frame, crm_frame, wave_frame, KEYS)
    want, want_dropped = _reference("customer", links, crm, wave)
    assert set(got.iter_rows()) == want and got.height == len(want)
    assert sorted(dropped) == sorted(want_dropped)
