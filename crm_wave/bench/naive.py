"""The naive baseline: the global and share steps the way most sync scripts write them.

One Python dict per record: decode every body, map it field by field, link through
dicts of merge keys, merge field by field, diff field by field and build each share
row's JSON on its own. Same rules as the engine (`crm_wave.sync.global_step`,
`crm_wave.sync.share_step`), so both must produce the same golden values and the same
share rows; the benchmark checks that, then compares the time.

It starts, like the engine, from the collected datasets in the store, and it writes
nothing (the engine's time includes writing its tables: the comparison favours this one).
"""

from __future__ import annotations

import json
import time
from datetime import datetime, UTC
from typing import Any

from crm_wave.mapping.canonical import canonical_fields, crm_to_canonical, person_name, wave_to_canonical
from crm_wave.mapping.flows import flows_for
from crm_wave.mapping.normalize import canonical
from crm_wave.store.db import Store
from crm_wave.sync.cells import to_cell
from crm_wave.sync.names import dataset

__all__ = ["naive_global", "naive_share", "naive_pass"]

SIDES = ("crm", "wave")


def _fields(entity: str) -> list[str]:
    return list(canonical_fields(entity))


def _one_way(entity: str) -> set[str]:
    return {n for n, f in canonical_fields(entity).items() if f.direction == "wave_to_crm"}


def _target_fields(entity: str, target: str) -> list[str]:
    fields = _fields(entity)
    if target == "wave":
        return [f for f in fields if f not in _one_way(entity)]
    return [f for f in fields if f != "Total"]


def _current(store: Store, name: str) -> list[tuple[str, bool, str | None, str | None]]:
    with store.connect() as con:
        store.ensure_dataset(con, name)
        return con.execute(
            f"SELECT _source_id, _deleted, _modified, body::VARCHAR FROM {name} "
            f"QUALIFY row_number() OVER (PARTITION BY _id ORDER BY _seq DESC) = 1").fetchall()


def _records(store: Store, system: str, entity: str, refs: dict[str, dict[str, str]]) -> dict[str, dict[str, Any]]:
    """source id -> {"deleted", "modified", "cells": {field: cell}, "keys": {key field: key}}"""
    to_canonical = crm_to_canonical if system == "crm" else wave_to_canonical
    keys = [(k.crm, k.kind) for k in flows_for(entity)[0].merge_keys]
    out = {}
    for sid, deleted, modified, body in _current(store, dataset(system, entity)):
        rec = to_canonical(entity, json.loads(body)) if body and not deleted else {}
        if entity == "order" and rec:
            cust = rec.get("CustomerId")
            if cust is not None:
                rec["CustomerId"] = refs["customer"].get(cust, f"unlinked:{system}:{cust}")
            for line in rec.get("Lines") or []:
                pid = line.get("ProductId")
                if pid is not None:
                    line["ProductId"] = refs["product"].get(pid, f"unlinked:{system}:{pid}")
        cells = {f: to_cell(rec.get(f)) for f in _fields(entity)}
        if entity == "customer":
            cells["Type"] = rec.get("Type")
        out[sid] = {"deleted": bool(deleted), "modified": modified, "cells": cells,
                    "keys": {k: canonical(kind, cells[k]) for k, kind in keys}}
    return out


def _link(entity: str, links: dict[str, dict[str, Any]], recs: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Link unlinked records by the merge keys (pairs in id order per key value); updates `links`."""
    by_crm = {v["crm_id"]: g for g, v in links.items() if v["crm_id"] is not None}
    by_wave = {v["wave_id"]: g for g, v in links.items() if v["wave_id"] is not None}
    cands = {
        "crm": sorted(s for s, r in recs["crm"].items() if not r["deleted"]
                      and (s not in by_crm or links[by_crm[s]]["wave_id"] is None)),
        "wave": sorted(s for s, r in recs["wave"].items() if not r["deleted"]
                       and (s not in by_wave or links[by_wave[s]]["crm_id"] is None)),
    }
    for k in flows_for(entity)[0].merge_keys:
        groups: dict[str, dict[str, list[str]]] = {"crm": {}, "wave": {}}
        for side in SIDES:
            for s in cands[side]:
                key = recs[side][s]["keys"][k.crm]
                if key is not None:
                    groups[side].setdefault(key, []).append(s)
        taken: dict[str, set[str]] = {"crm": set(), "wave": set()}
        for key, crm_ids in groups["crm"].items():
            for c, w in zip(crm_ids, groups["wave"].get(key, [])):
                g_crm, g_wave = by_crm.get(c), by_wave.get(w)
                gid = g_crm or g_wave or f"crm-{entity}:{c}"
                if g_crm is not None and g_wave is not None:
                    del links[g_wave]
                links[gid] = {"crm_id": c, "wave_id": w}
                by_crm[c], by_wave[w] = gid, gid
                taken["crm"].add(c)
                taken["wave"].add(w)
        cands = {side: [s for s in cands[side] if s not in taken[side]] for side in SIDES}
    for s in cands["crm"]:
        if s not in by_crm:
            links[f"crm-{entity}:{s}"] = {"crm_id": s, "wave_id": None}
    for s in cands["wave"]:
        if s not in by_wave:
            links[f"wave-{entity}:{s}"] = {"crm_id": None, "wave_id": s}


def _ts(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _state(side_id: str | None, rec: dict[str, Any] | None) -> str:
    if side_id is None:
        return "absent"
    if rec is None:
        return "unseen"  # linked, never collected (`crm_wave.logic.merge.side_state`)
    if rec["deleted"]:
        return "deleted"
    return "present"


def naive_global(store: Store, entity: str, links_in: dict[str, dict[str, dict[str, Any]]] | None = None,
                 timings: dict[str, float] | None = None) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Golden records of `entity`: (global id -> {column: value}, the links used).

    `timings` (if given) collects seconds per phase: "read" (links, agreed values, the
    records decoded and mapped) and "merge" (linking and merging)."""
    timings = timings if timings is not None else {}
    t = time.perf_counter()
    with store.connect() as con:
        all_links = {e: {g: {"crm_id": c, "wave_id": w} for g, c, w, _h in store.read_links(con, e).iter_rows()}
                     for e in ("customer", "product", "order")}
        agreed = store.read_agreed(con, entity)
    if links_in is not None:
        all_links.update(links_in)
    refs = {s: {e: {v[f"{s}_id"]: g for g, v in all_links[e].items() if v[f"{s}_id"] is not None}
                for e in ("customer", "product")} for s in SIDES}
    recs = {s: _records(store, s, entity, refs[s]) for s in SIDES}
    timings["read"] = timings.get("read", 0.0) + time.perf_counter() - t
    t = time.perf_counter()
    links = all_links[entity]
    _link(entity, links, recs)
    fields, one_way = _fields(entity), _one_way(entity)
    golden: dict[str, dict[str, Any]] = {}
    for gid, link in links.items():
        c = recs["crm"].get(link["crm_id"]) if link["crm_id"] is not None else None
        w = recs["wave"].get(link["wave_id"]) if link["wave_id"] is not None else None
        cs, ws = _state(link["crm_id"], c), _state(link["wave_id"], w)
        base = agreed.get(gid, {})
        both = cs == "present" and ws == "present"
        tc, tw = _ts(c["modified"] if c else None), _ts(w["modified"] if w else None)
        crm_newer = True if tc is None or tw is None else tc >= tw
        row: dict[str, Any] = {"global_id": gid, "crm_id": link["crm_id"], "wave_id": link["wave_id"],
                               "crm_state": cs, "wave_state": ws}
        for f in fields:
            cv = c["cells"][f] if c else None
            wv = w["cells"][f] if w else None
            bv = base.get(f)
            row[f"{f}__crm"], row[f"{f}__wave"] = cv, wv
            if f in one_way:
                value = wv if ws == "present" else cv
            elif not both:
                value = cv if cs == "present" else wv
            elif cv == wv:
                value = cv
            elif cv == bv:
                value = wv
            elif wv == bv:
                value = cv
            elif crm_newer:
                value = cv if cv is not None else wv
            else:
                value = wv if wv is not None else cv
            row[f] = value
        if entity == "customer":
            row["Type__crm"] = c["cells"]["Type"] if c else None
            row["Type__wave"] = w["cells"]["Type"] if w else None
            row["Type"] = row["Type__crm"] if cs in ("present", "deleted") else row["Type__wave"]
            if row["Type"] == "person":
                row["Name"] = person_name(row["FirstName"], row["LastName"])
        golden[gid] = row
    timings["merge"] = timings.get("merge", 0.0) + time.perf_counter() - t
    return golden, all_links


def _waits(row: dict[str, Any], target: str, links: dict[str, dict[str, dict[str, Any]]]) -> str | None:
    why = []
    if target == "wave" and row["Status"] == "cancelled" and row[f"{target}_state"] == "absent":
        why.append("cancelled in the CRM: not created in Wave")
    cust = row["CustomerId"]
    target_of = lambda e, g: (links[e].get(g) or {}).get(f"{target}_id")  # noqa: E731
    if cust is not None and not cust.startswith("unlinked:") and target_of("customer", cust) is None:
        why.append(f"customer {cust} is not linked in {target} yet")
    missing = sorted({str(line.get("ProductId")) for line in json.loads(row["Lines"] or "[]")
                      if not str(line.get("ProductId")).startswith("unlinked:")
                      and target_of("product", line.get("ProductId")) is None})
    if missing:
        why.append(f"product(s) {', '.join(missing)} not linked in {target} yet")
    return "; ".join(why) or None


def naive_share(golden: dict[str, dict[str, Any]], target: str, entity: str,
                links: dict[str, dict[str, dict[str, Any]]]) -> list[tuple]:
    """Share rows `(global_id, op, target_id, source_id, changes, before, reason)`, by global id."""
    source = "wave" if target == "crm" else "crm"
    fields = _target_fields(entity, target)
    out = []
    for gid in sorted(golden):
        row = dict(golden[gid])
        ts, ss = row[f"{target}_state"], row[f"{source}_state"]
        wait = _waits(row, target, links) if entity == "order" else None
        hold = lambda f: row.__setitem__(f, row[f"{f}__{target}"]) if ts == "present" else None  # noqa: E731
        if entity == "order" and target == "wave" and row["Status"] in ("cancelled", "draft") \
                and row["Status__wave"] != "draft":
            hold("Status")
        if entity == "product" and target == "wave" and row["IsArchived"] == "false" and row["IsArchived__wave"] == "true":
            hold("IsArchived")
        if entity == "customer" and target == "crm" and row["Type"] == "person":
            hold("Name")
        changed = [f for f in fields if row[f] != row[f"{f}__{target}"]]
        if ts == "absent" and ss == "present":
            op = "insert"
        elif ts == "present" and ss == "present" and changed:
            op = "update"
        elif ts == "present" and ss == "deleted":
            op = "delete"
        else:
            continue
        reason = wait if op in ("insert", "update") else None
        if reason is not None:
            op = "wait"
        if op == "delete":
            changes: dict[str, Any] = {}
            before: dict[str, Any] = {}
        elif op == "insert" or (op == "wait" and ts == "absent"):
            changes, before = {f: row[f] for f in fields if row[f] is not None}, {}
        else:
            changes = {f: row[f] for f in changed}
            before = {f: row[f"{f}__{target}"] for f in changed}
        if op == "insert" and entity == "customer" and target == "crm":
            changes["Type"] = row["Type"] or "organization"
        out.append((gid, op, row[f"{target}_id"], row[f"{source}_id"],
                    json.dumps(changes, sort_keys=True, ensure_ascii=False),
                    json.dumps(before, sort_keys=True, ensure_ascii=False), reason))
    return out


def naive_pass(store: Store, entities: tuple[str, ...] = ("customer", "product", "order"),
               timings: dict[str, float] | None = None) -> dict[str, Any]:
    """Golden records and share rows of every entity, the naive way (links of earlier entities carried on).

    `timings` collects seconds per phase: read, merge, diff."""
    timings = timings if timings is not None else {}
    out: dict[str, Any] = {}
    links_so_far: dict[str, dict[str, dict[str, Any]]] = {}
    for entity in entities:
        golden, links = naive_global(store, entity, links_so_far, timings)
        links_so_far = {e: links[e] for e in ("customer", "product")}
        t = time.perf_counter()
        out[entity] = {"golden": golden, **{target: naive_share(golden, target, entity, links) for target in SIDES}}
        timings["diff"] = timings.get("diff", 0.0) + time.perf_counter() - t
    return out
