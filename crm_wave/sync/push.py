"""Push: send a share table's inserts and updates to its target (`<system>-<type>-share` out).

Creates follow the safe-create pattern: the intent is stored before the call, the new id
is linked in the same transaction that clears the intent, and a create whose outcome is
unknown is recognised on the next pass (see `logic/intents.py`) instead of being sent
again. A record the target refuses goes to `dead_letters` with the field and message,
and the rest of the batch goes on. Deletes are never pushed here: they wait in the share
table for approval.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import polars as pl

from crm_wave.mapping.canonical import canonical_fields, canonical_to_crm, canonical_to_wave_input
from crm_wave.store.db import Store
from crm_wave.sync.cells import from_cell
from crm_wave.sync.names import CRM_RESOURCE, dataset, global_table, share_table
from crm_wave.sync.share_step import target_fields
from crm_wave.sync.validate import problems
from crm_wave.systems.http import TransientError
from crm_wave.systems.wave.client import Mutation

__all__ = ["PushResult", "push"]

CHUNK = 100
_ADDRESS = ("StreetAddress1", "StreetAddress2", "City", "ZipCode", "State", "Country")


@dataclass
class PushResult:
    """What one push did."""

    table: str
    created: int = 0
    updated: int = 0
    failed: int = 0
    skipped: int = 0
    unknown: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        """Records written."""
        return self.created + self.updated


class _Refs:
    """Global ids -> ids in the target, for references (order customer and line products)."""

    def __init__(self, store: Store, con: Any, target: str) -> None:
        self.maps = {
            e: dict(zip(df["global_id"].to_list(), df[f"{target}_id"].to_list()))
            for e in ("customer", "product")
            for df in [store.read_links(con, e)]
        }

    def apply(self, entity: str, values: dict[str, Any]) -> dict[str, Any]:
        if entity != "order":
            return values
        out = dict(values)
        if "CustomerId" in out:
            out["CustomerId"] = self.maps["customer"].get(out["CustomerId"])
        if "Lines" in out:
            out["Lines"] = [{**line, "ProductId": self.maps["product"].get(line["ProductId"])} for line in out["Lines"]]
        return out


def _values(entity: str, cells: dict[str, str | None]) -> dict[str, Any]:
    kinds = {n: f.kind for n, f in canonical_fields(entity).items()}
    return {f: (v if f == "Type" else from_cell(kinds.get(f, "text"), v)) for f, v in cells.items()}


def _wave_ops(entity: str, op: str, gid: str, target_id: str | None, values: dict[str, Any],
              golden: dict[str, Any], business_id: str) -> list[Mutation]:
    """The Wave mutations for one share row (a create, or a patch plus archive/approve)."""
    vals = dict(values)
    if entity == "customer" and any(f in vals for f in _ADDRESS):
        vals.update({f: golden.get(f) for f in _ADDRESS})  # Wave replaces the address object whole
    data = canonical_to_wave_input(entity, vals)
    if entity == "customer" and "name" in data and op == "update" and data["name"] is None:
        data.pop("name")
    ops: list[Mutation] = []
    if op == "insert":
        data["businessId"] = business_id
        if entity == "order":
            data["status"] = "SAVED" if vals.get("Status") == "confirmed" else "DRAFT"
        ops.append(Mutation(f"{_wave_name(entity)}Create", data, gid))
        return ops
    if data:
        ops.append(Mutation(f"{_wave_name(entity)}Patch", {"id": target_id, **data}, gid))
    if entity == "product" and vals.get("IsArchived") is True:
        ops.append(Mutation("productArchive", {"id": target_id}, gid))
    if entity == "order" and vals.get("Status") == "confirmed":
        ops.append(Mutation("invoiceApprove", {"invoiceId": target_id}, gid))
    return ops


def _wave_name(entity: str) -> str:
    return {"customer": "customer", "product": "product", "order": "invoice"}[entity]


def _error_field(entity: str, path: list[str] | None) -> str | None:
    if not path:
        return None
    wave_field = ".".join(p for p in path[1:] if not str(p).isdigit()) or None
    for name, f in canonical_fields(entity).items():
        if wave_field and (wave_field in f.inputs or wave_field == f.wave):
            return name
    return wave_field


def push(store: Store, target: str, entity: str, client: Any, now: datetime, *, run_id: str | None = None,
         business_id: str | None = None) -> PushResult:
    """Push the share table of (`target`, `entity`) through `client`."""
    table = share_table(target, entity)
    result = PushResult(table)
    naive = now.replace(tzinfo=None)
    with store.connect() as con:
        share = store.read_table(con, table)
        golden_frame = store.read_table(con, global_table(entity))
        refs = _Refs(store, con, target)
        versions = dict(
            con.execute(f"SELECT _source_id, _version FROM {dataset(target, entity)}_current").fetchall()
        ) if target == "crm" else {}
    if share is None or golden_frame is None:
        return result
    work = share.filter(pl.col("op").is_in(["insert", "update"]))
    if work.height == 0:
        return result
    golden = {r["global_id"]: r for r in golden_frame.filter(pl.col("global_id").is_in(work["global_id"].to_list())).iter_rows(named=True)}
    fields = target_fields(entity, target)
    rows = []
    for r in work.iter_rows(named=True):
        g = golden.get(r["global_id"], {})
        cells = json.loads(r["changes"])
        values = refs.apply(entity, _values(entity, cells))
        g_values = _values(entity, {f: g.get(f) for f in fields})
        bad = problems(target, entity, values, insert=r["op"] == "insert")
        if entity == "order" and (values.get("CustomerId", "x") is None or any(
                line.get("ProductId") is None for line in values.get("Lines", []))):
            bad.append(("CustomerId", "a referenced record is not linked in the target yet"))
        rows.append((r, values, g_values, cells, bad))
    if target == "wave":
        _push_wave(store, entity, client, rows, result, naive, run_id, business_id or client.business_id)
    else:
        _push_crm(store, entity, client, rows, result, naive, run_id, versions)
    return result


def _fail(store: Store, con: Any, target: str, entity: str, r: dict, field: str | None, message: str,
          result: PushResult, now: datetime, run_id: str | None) -> None:
    result.failed += 1
    result.messages.append(f"{target} {entity} {r['global_id']}: {field or 'record'}: {message}")
    store.dead_letter(con, system=target, entity=entity, global_id=r["global_id"], record_id=r["target_id"] or r["source_id"],
                      op=r["op"], field=field, message=message, now=now)
    store.log(con, [(now, run_id, target, entity, r["global_id"], r["target_id"], r["op"], json.loads(r["changes"]),
                     json.loads(r["before"]), f"failed: {field or 'record'}: {message}")])


def _done(store: Store, con: Any, target: str, entity: str, r: dict, new_id: str | None, cells: dict,
          golden_cells: dict | None, result: PushResult, now: datetime, run_id: str | None) -> None:
    if r["op"] == "insert":
        result.created += 1
        side = {"crm": (new_id, None), "wave": (None, new_id)}[target]
        store.upsert_links(con, entity, [(r["global_id"], side[0], side[1], f"created:{target}")], now)
        store.clear_intent(con, target, entity, r["global_id"])
    else:
        result.updated += 1
    store.upsert_agreed(con, entity, {r["global_id"]: golden_cells or cells}, now)
    store.clear_dead_letter(con, target, entity, r["global_id"])
    store.log(con, [(now, run_id, target, entity, r["global_id"], new_id or r["target_id"], r["op"], cells,
                     json.loads(r["before"]), "ok")])


def _push_wave(store: Store, entity: str, client: Any, rows: list, result: PushResult, now: datetime,
               run_id: str | None, business_id: str) -> None:
    from crm_wave.sync.cells import to_cell

    planned: list[tuple[dict, list[Mutation], dict]] = []
    with store.connect() as con:
        for r, values, g_values, cells, bad in rows:
            if bad:
                for fld, msg in bad[:1]:
                    _fail(store, con, "wave", entity, r, fld, msg, result, now, run_id)
                continue
            ops = _wave_ops(entity, r["op"], r["global_id"], r["target_id"], values, g_values, business_id)
            if not ops:
                result.skipped += 1
                continue
            if r["op"] == "insert":
                store.add_intent(con, "wave", entity, r["global_id"], r["global_id"], cells, now)
            golden_cells = {f: to_cell(v) for f, v in g_values.items()} if r["op"] == "insert" else None
            planned.append((r, ops, golden_cells or cells))
    for start in range(0, len(planned), CHUNK):
        chunk = planned[start:start + CHUNK]
        # First mutations (create or patch), then the follow-ups (archive, approve) of the same records.
        first = [ops[0] for _, ops, _ in chunk]
        try:
            outcomes = {res.key: res for res in client.mutate(first)}
        except TransientError as exc:
            outcomes = {res.key: res for res in getattr(exc, "results", [])}
            result.unknown += len(chunk) - len(outcomes)
            result.messages.append(f"wave {entity}: {exc}")
        follow = []
        with store.connect() as con:
            for r, ops, cells in chunk:
                res = outcomes.get(r["global_id"])
                if res is None:
                    continue  # outcome unknown: the intent stays and is resolved on the next pass
                if not res.ok:
                    err = res.errors[0] if res.errors else None
                    fld = _error_field(entity, err.path if err else None)
                    _fail(store, con, "wave", entity, r, fld, (err.message if err else "failed") or "failed", result, now, run_id)
                    store.clear_intent(con, "wave", entity, r["global_id"])
                    continue
                new_id = (res.entity or {}).get("id") if r["op"] == "insert" else None
                _done(store, con, "wave", entity, r, new_id, cells, None, result, now, run_id)
                for op in ops[1:]:
                    follow.append(Mutation(op.name, {**op.input, **({"id": new_id} if "id" in op.input and new_id else {}),
                                                     **({"invoiceId": new_id} if "invoiceId" in op.input and new_id else {})}, op.key))
        if follow:
            try:
                client.mutate(follow)
            except TransientError as exc:
                result.messages.append(f"wave {entity} follow-up: {exc}")


def _push_crm(store: Store, entity: str, client: Any, rows: list, result: PushResult, now: datetime,
              run_id: str | None, versions: dict) -> None:
    from crm_wave.sync.cells import to_cell
    from crm_wave.systems.crm.client import CrmError, CrmNotFound, CrmVersionMismatch

    resource = CRM_RESOURCE[entity]
    for r, values, g_values, cells, bad in rows:
        with store.connect() as con:
            if bad:
                fld, msg = bad[0]
                _fail(store, con, "crm", entity, r, fld, msg, result, now, run_id)
                continue
            body = canonical_to_crm(entity, values)
            if entity == "customer" and r["op"] == "insert":
                body["Type"] = values.get("Type") or "organization"
            if entity == "order":
                body.pop("Total", None)
            if r["op"] == "insert":
                store.add_intent(con, "crm", entity, r["global_id"], f"crm-wave:{r['global_id']}", cells, now)
        try:
            if r["op"] == "insert":
                body = {k: v for k, v in body.items() if v is not None and v != []} | (
                    {"Lines": body["Lines"]} if "Lines" in body else {})
                stored = client.create(resource, body, idempotency_key=f"crm-wave:{r['global_id']}")
            else:
                stored = client.patch(resource, r["target_id"], body, if_match=versions.get(r["target_id"]))
        except CrmVersionMismatch:
            result.skipped += 1
            result.messages.append(f"crm {entity} {r['target_id']}: changed since collected; merged on the next pass")
            continue
        except CrmNotFound:
            result.skipped += 1
            continue
        except CrmError as exc:
            with store.connect() as con:
                _fail(store, con, "crm", entity, r, getattr(exc, "field", None), getattr(exc, "message", str(exc)),
                      result, now, run_id)
                store.clear_intent(con, "crm", entity, r["global_id"])
            continue
        except TransientError as exc:
            result.unknown += 1
            result.messages.append(f"crm {entity} {r['global_id']}: {exc}")
            continue
        golden_cells = {f: to_cell(v) for f, v in g_values.items()} if r["op"] == "insert" else None
        with store.connect() as con:
            _done(store, con, "crm", entity, r, str(stored["Id"]) if r["op"] == "insert" else None, cells,
                  golden_cells, result, now, run_id)
