"""Push: send a share table's inserts and updates to its target (`<system>-<type>-share` out).

Creates follow the safe-create pattern: the intent is stored before the call, the new id
is linked in the same transaction that clears the intent, and a create whose outcome is
unknown is found again (the next collect, or a lookup by key before any new attempt)
instead of being sent twice. One push per share table runs at a time, and a record
already linked by an earlier push is never created again. A record the target refuses
goes to `dead_letters` with the field and message, the rest of the batch goes on, and
after `max_attempts` failures of the same version it is parked until it changes or an
operator retries it. Deletes are never pushed here: they wait for approval
(`crm_wave/sync/deletes.py`). The circuit breaker (`breaker.py`) holds unusual pushes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import polars as pl

from crm_wave.logic.intents import intent_key
from crm_wave.mapping.canonical import canonical_fields, canonical_to_crm, canonical_to_wave_input, wave_to_canonical
from crm_wave.store.db import Store
from crm_wave.sync.breaker import BreakerPolicy, CircuitOpen, breaker_state
from crm_wave.sync.cells import from_cell, to_cell
from crm_wave.sync.names import CRM_RESOURCE, dataset, global_table, share_table
from crm_wave.sync.refs import links_where, order_links
from crm_wave.sync.share_step import target_fields
from crm_wave.sync.validate import problems
from crm_wave.systems.http import TransientError
from crm_wave.systems.protocols import Client, CrmApi, WaveApi
from crm_wave.systems.wave.client import Mutation, MutationResult, WaveBatchInterrupted
from crm_wave.sync.wave_survival import locked_invoice_reason, park_locked, wave_record_gone

__all__ = ["PushPolicy", "PushResult", "push"]

_ADDRESS = ("StreetAddress1", "StreetAddress2", "City", "ZipCode", "State", "Country")
_WAVE_NAME = {"customer": "customer", "product": "product", "order": "invoice"}


@dataclass(frozen=True)
class PushPolicy:
    """How a push behaves: dead-letter parking, the circuit breaker, chunking."""

    max_attempts: int = 3
    breaker: BreakerPolicy = BreakerPolicy()
    chunk: int = 100


@dataclass
class PushResult:
    """What one push did."""

    table: str
    created: int = 0
    updated: int = 0
    failed: int = 0
    skipped: int = 0
    parked: int = 0
    recovered: int = 0
    unknown: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def writes(self) -> int:
        """Records written (or found already written, for recovered creates)."""
        return self.created + self.updated + self.recovered


@dataclass
class _Row:
    share: dict[str, Any]
    values: dict[str, Any]  # changes, references in target ids
    golden: dict[str, Any]  # all golden values, references as global ids
    cells: dict[str, Any]  # changes as cells (what the sync agrees on after the write)
    problems: list[tuple[str, str]]
    basis: str | None = None  # the target record's modification time in the golden row the share was built from

    @property
    def gid(self) -> str:
        return self.share["global_id"]

    @property
    def op(self) -> str:
        return self.share["op"]

    @property
    def changes_hash(self) -> str:
        return hashlib.sha1(self.share["changes"].encode()).hexdigest()


class _Refs:
    """Global ids -> ids in the target, for references (order customer and line products)."""

    def __init__(self, links: dict[str, pl.DataFrame], target: str) -> None:
        self.maps = {e: dict(zip(df["global_id"].to_list(), df[f"{target}_id"].to_list())) for e, df in links.items()}

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


def push(store: Store, target: str, entity: str, client: Client, now: datetime, *, run_id: str | None = None,
         business_id: str | None = None, policy: PushPolicy = PushPolicy(),
         progress: Callable[[str], None] | None = None) -> PushResult:
    """Push the share table of (`target`, `entity`) through `client`; raise `CircuitOpen` if held."""
    table = share_table(target, entity)
    with store.named_lock(f"push_{dataset(target, entity)}"):
        with store.connect() as con:
            share = store.read_table(con, table)
        if share is None or share.height == 0:
            return PushResult(table)  # nothing to send, nothing the breaker could hold
        state = breaker_state(store, target, entity, policy.breaker, share=share)
        if state.open:
            raise CircuitOpen(state)
        rows, result = _plan(store, target, entity, now, policy, table, share)
        if not rows:
            return result
        push_target: _WavePush | _CrmPush
        if target == "wave":
            wave = cast(WaveApi, client)
            push_target = _WavePush(store, entity, wave, business_id or wave.business_id)
        else:
            push_target = _CrmPush(store, entity, cast(CrmApi, client))
        # Sending may take minutes: each API call gives the file back if someone waits for it (`Store.lent`).
        push_target.run(rows, result, now.replace(tzinfo=None), run_id, policy, progress)
        return result


_MISSING = object()  # no such column in the golden row: equal to no cell


def _plan(store: Store, target: str, entity: str, now: datetime, policy: PushPolicy, table: str,
          share: pl.DataFrame) -> tuple[list[_Row], PushResult]:
    result = PushResult(table)
    with store.connect() as con:
        if store.table_columns(con, global_table(entity)) is None:
            return [], result
        # In global id order, as a full rebuild of the share table lists them.
        work = share.filter(pl.col("op").is_in(["insert", "update"])).sort("global_id")
        if work.height == 0:
            return [], result
        golden_frame = store.read_rows(con, global_table(entity), "global_id", work["global_id"])
        refs = _Refs(order_links(con, golden_frame) if entity == "order" else {}, target)
        links = links_where(con, entity, gids=work["global_id"], **{
            f"{target}_ids": work["target_id"].drop_nulls()}).filter(pl.col(f"{target}_id").is_not_null())
        parked = store.dead_letters(con, target, entity)
    linked = set(links[f"{target}_id"].to_list())
    linked_gids = set(links["global_id"].to_list())
    golden = {r["global_id"]: r for r in golden_frame.iter_rows(named=True)}
    fields = target_fields(entity, target)
    rows = []
    for r in work.iter_rows(named=True):
        if r["op"] == "insert" and r["global_id"] in linked_gids:
            result.skipped += 1  # an earlier push created it already; the next collect reads it
            continue
        if r["op"] == "update" and r["target_id"] not in linked:
            result.skipped += 1
            continue
        cells = json.loads(r["changes"])
        held = golden.get(r["global_id"], {})
        if r["op"] == "update" and all(held.get(f"{f}__{target}", _MISSING) == cell for f, cell in cells.items()):
            # The target holds these values already, as a global step run since this share was built saw it
            # (another sync of the file sent the same update and read it back): a share row lists only fields
            # whose value differed in the golden row it was built from.
            result.skipped += 1
            continue
        row = _Row(r, refs.apply(entity, _values(entity, cells)), _values(entity, {f: held.get(f) for f in fields}),
                   cells, [], held.get(f"{target}_modified"))
        letter = parked.get(row.gid)
        if letter and letter[0] == row.changes_hash and letter[1] >= policy.max_attempts:
            result.parked += 1
            continue
        row.problems = problems(target, entity, row.values, insert=row.op == "insert", golden=row.golden)
        if entity == "order" and not row.problems and (
                row.values.get("CustomerId", "x") is None
                or any(line.get("ProductId") is None for line in row.values.get("Lines", []))):
            row.problems.append(("CustomerId", "a referenced record is not linked in the target yet"))
        rows.append(row)
    return rows, result


class _TargetPush:
    """Bookkeeping shared by both targets: dead letters, links, agreed values, the sync log."""

    system = ""

    def __init__(self, store: Store, entity: str) -> None:
        self.store, self.entity = store, entity

    def fail(self, con: Any, row: _Row, fld: str | None, message: str, result: PushResult, now: datetime,
             run_id: str | None) -> None:
        result.failed += 1
        result.messages.append(f"{self.system} {self.entity} {row.gid}: {fld or 'record'}: {message}")
        self.store.dead_letter(con, system=self.system, entity=self.entity, global_id=row.gid,
                               record_id=row.share["target_id"] or row.share["source_id"], op=row.op, field=fld,
                               message=message, now=now, changes_hash=row.changes_hash)
        self.store.log(con, [(now, run_id, self.system, self.entity, row.gid, row.share["target_id"], row.op,
                              row.cells, json.loads(row.share["before"]), f"failed: {fld or 'record'}: {message}")])

    def done(self, con: Any, row: _Row, new_id: str | None, result: PushResult, now: datetime, run_id: str | None,
             *, how: str | None = None) -> None:
        written_at = _written_at()
        if row.op == "insert":
            if how and how.endswith("(recovered)"):
                result.recovered += 1
            else:
                result.created += 1
            side = (new_id, None) if self.system == "crm" else (None, new_id)
            self.store.upsert_links(con, self.entity, [(row.gid, side[0], side[1], how or f"created:{self.system}")],
                                    written_at)
            self.store.clear(con, "intents", self.system, self.entity, [row.gid])
            agreed = {f: to_cell(v) for f, v in row.golden.items()}
        else:
            result.updated += 1
            agreed = row.cells
        self.store.upsert_agreed(con, self.entity, {row.gid: agreed}, now)
        self.store.mark_unread(con, dataset(self.system, self.entity), written_at)
        self.store.clear(con, "dead_letters", self.system, self.entity, [row.gid])
        self.store.log(con, [(now, run_id, self.system, self.entity, row.gid, new_id or row.share["target_id"], row.op,
                              row.cells, json.loads(row.share["before"]), how or "ok")])

    def done_many(self, con: Any, done: list[tuple[_Row, str | None]], result: PushResult, now: datetime,
                  run_id: str | None) -> None:
        """`done` of many rows `(row, new id)` at once, in few statements."""
        if not done:
            return
        links, agreed, logs = [], {}, []
        for row, new_id in done:
            if row.op == "insert":
                result.created += 1
                side = (new_id, None) if self.system == "crm" else (None, new_id)
                links.append((row.gid, side[0], side[1], f"created:{self.system}"))
                agreed[row.gid] = {f: to_cell(v) for f, v in row.golden.items()}
            else:
                result.updated += 1
                agreed[row.gid] = row.cells
            logs.append((now, run_id, self.system, self.entity, row.gid, new_id or row.share["target_id"], row.op,
                         row.cells, json.loads(row.share["before"]), "ok"))
        gids = [row.gid for row, _ in done]
        written_at = _written_at()
        self.store.upsert_links(con, self.entity, links, written_at)
        self.store.clear(con, "intents", self.system, self.entity, [g for g, *_ in links])
        self.store.upsert_agreed(con, self.entity, agreed, now)
        self.store.mark_unread(con, dataset(self.system, self.entity), written_at)
        self.store.clear(con, "dead_letters", self.system, self.entity, gids)
        self.store.log(con, logs)

    def reject_invalid(self, rows: list[_Row], result: PushResult, now: datetime, run_id: str | None) -> list[_Row]:
        """Dead-letter rows that fail validation; return the others."""
        if not any(row.problems for row in rows):
            return rows
        good = []
        with self.store.connect() as con:
            for row in rows:
                if row.problems:
                    fld, msg = row.problems[0]
                    self.fail(con, row, fld, msg, result, now, run_id)
                    self.store.clear(con, "intents", self.system, self.entity, [row.gid])
                else:
                    good.append(row)
        return good


class _WavePush(_TargetPush):
    system = "wave"

    def __init__(self, store: Store, entity: str, client: WaveApi, business_id: str) -> None:
        super().__init__(store, entity)
        self.client, self.business_id = client, business_id

    def ops(self, row: _Row) -> list[Mutation]:
        """The Wave mutations for one row: a create, or a patch plus archive/approve."""
        vals = dict(row.values)
        if self.entity == "customer" and any(f in vals for f in _ADDRESS):
            vals.update({f: row.golden.get(f) for f in _ADDRESS})  # Wave replaces the address object whole
        data = canonical_to_wave_input(self.entity, vals)
        name = _WAVE_NAME[self.entity]
        if row.op == "insert":
            data["businessId"] = self.business_id
            if self.entity == "order":
                data["status"] = "SAVED" if vals.get("Status") == "confirmed" else "DRAFT"
            ops = [Mutation(f"{name}Create", data, row.gid)]
            if self.entity == "product" and vals.get("IsArchived") is True:
                ops.append(Mutation("productArchive", {"id": None}, row.gid))
            return ops
        if self.entity == "customer" and data.get("name", "") is None:
            data.pop("name")
        ops = [Mutation(f"{name}Patch", {"id": row.share["target_id"], **data}, row.gid)] if data else []
        if self.entity == "product" and vals.get("IsArchived") is True:
            ops.append(Mutation("productArchive", {"id": row.share["target_id"]}, row.gid))
        if self.entity == "order" and vals.get("Status") == "confirmed":
            ops.append(Mutation("invoiceApprove", {"invoiceId": row.share["target_id"]}, row.gid))
        return ops

    def recover(self, rows: list[_Row], pending: dict, linked: set[str]) -> dict[str, str]:
        """Find records that earlier creates of `rows` may have made (outcome unknown): `global_id -> Wave id`.

        One read of the whole type, only when intents are pending (usually the next
        collect has linked them already), instead of a lookup per record.
        """
        keyed = {intent_key(self.entity, {f: to_cell(v) for f, v in row.golden.items()}): row.gid
                 for row in rows if row.op == "insert" and row.gid in pending}
        keyed.pop(None, None)
        if not keyed:
            return {}
        read = {"customer": self.client.list_customers, "product": self.client.list_products,
                "order": self.client.list_invoices}[self.entity]
        found: dict[str, str] = {}
        with self.store.lent():
            nodes = read()
        for node in nodes:
            if node["id"] in linked:
                continue
            key = intent_key(self.entity, {k: to_cell(v) for k, v in wave_to_canonical(self.entity, node).items()})
            gid = keyed.pop(key, None)
            if gid is not None:
                found[gid] = node["id"]
        return found

    def changed_since_collect(self, rows: list[_Row]) -> set[str]:
        """Wave ids of updates whose record changed after the version their share row was built from
        (optimistic check: Wave has no If-Match).

        Each row is compared with its own basis (`_Row.basis`, from the golden row), not with the newest
        collected version: another sync of the file may have sent the same update meanwhile and read it
        back into the dataset, and this row, built before, would send it again."""
        basis = {row.share["target_id"]: row.basis or "" for row in rows if row.op == "update"}
        if not basis:
            return set()
        with self.store.connect() as con:
            ((newest,),) = con.execute(f"SELECT max(wave_modified) FROM {global_table(self.entity)}").fetchall()
        if newest is None:
            return set()
        read = {"customer": self.client.list_customers, "product": self.client.list_products,
                "order": self.client.list_invoices}[self.entity]
        # Everything modified after the newest version the golden rows were built from: one read, usually empty.
        with self.store.lent():
            nodes = read(modified_after=newest)
        return {node["id"] for node in nodes
                if node["id"] in basis and (node.get("modifiedAt") or "") > basis[node["id"]]}

    def run(self, rows: list[_Row], result: PushResult, now: datetime, run_id: str | None, policy: PushPolicy,
            progress: Callable[[str], None] | None) -> None:
        self.max_attempts = policy.max_attempts
        rows = self.reject_invalid(rows, result, now, run_id)
        with self.store.connect() as con:
            pending = self.store.pending_intents(con, "wave", self.entity)
            # Every linked Wave id, for lookups of creates whose outcome is unknown (rare).
            linked = set(self.store.read_links(con, self.entity)["wave_id"].drop_nulls().to_list()) \
                if any(row.op == "insert" and row.gid in pending for row in rows) else set()
        stale = self.changed_since_collect(rows)
        recovered = self.recover(rows, pending, linked)
        planned = []
        for row in rows:
            if row.op == "update" and row.share["target_id"] in stale:
                result.skipped += 1
                result.messages.append(f"wave {self.entity} {row.share['target_id']}: changed since collected; "
                                       "merged on the next pass")
                continue
            if row.gid in recovered:
                with self.store.connect() as con:
                    self.done(con, row, recovered[row.gid], result, now, run_id, how="created:wave (recovered)")
                continue
            ops = self.ops(row)
            if not ops:
                result.skipped += 1
                continue
            planned.append((row, ops))
        creates = [(row.gid, row.gid, row.cells) for row, _ in planned if row.op == "insert"]
        if creates:
            with self.store.connect() as con:
                self.store.add_intents(con, "wave", self.entity, creates, now)
        for start in range(0, len(planned), policy.chunk):
            self._chunk(planned[start:start + policy.chunk], result, now, run_id)
            if progress:
                sent = min(start + policy.chunk, len(planned))
                progress(f"wave {self.entity}: {sent}/{len(planned)} sent ({100 * sent // len(planned)}%)")

    def survive(self, con: Any, row: _Row, res: MutationResult, result: PushResult, now: datetime,
                run_id: str | None) -> bool:
        """Handle Wave's harsher refusals of one op (wave_survival.py); True when handled here:
        rate limited (nothing done; the next pass sends it), a linked record Wave no longer has
        (its link breaks visibly: the CRM side is held as a delete), a locked invoice (parked)."""
        target = row.share["target_id"]
        if isinstance(res.error, TransientError):
            self.store.clear(con, "intents", "wave", self.entity, [row.gid])
            result.skipped += 1
            result.messages.append(f"wave {self.entity} {row.gid}: {res.error}; sent again next pass")
            return True
        if res.not_found and row.op == "update":
            wave_record_gone(self.store, con, self.entity, target, now)
            result.skipped += 1
            result.messages.append(f"wave {self.entity} {target}: no longer exists in Wave; the CRM side is held "
                                   "as a delete (crm-wave deletes)")
            self.store.log(con, [(now, run_id, "wave", self.entity, row.gid, target, row.op, row.cells,
                                  json.loads(row.share["before"]), "gone: no longer exists in Wave; held as a delete")])
            return True
        if self.entity == "order" and row.op == "update" and res.name == "invoicePatch":
            reason = locked_invoice_reason(self.client, target, [e.path for e in res.errors])
            if reason:
                err = next((e for e in res.errors if len(e.path) > 1), None)
                self.fail(con, row, _error_field(self.entity, err.path if err else None), reason, result, now, run_id)
                park_locked(self.store, con, self.entity, row.gid, self.max_attempts)
                return True
        return False

    def _chunk(self, chunk: list[tuple[_Row, list[Mutation]]], result: PushResult, now: datetime,
               run_id: str | None) -> None:
        try:
            with self.store.lent():
                answers = self.client.mutate([ops[0] for _, ops in chunk])
            outcomes = {res.key: res for res in answers}
        except WaveBatchInterrupted as exc:
            outcomes = {res.key: res for res in exc.results}
            unsent = set(exc.unsent_keys)
            result.unknown += len(chunk) - len(outcomes) - len(unsent)
            result.skipped += len(unsent)
            result.messages.append(f"wave {self.entity}: {exc}")
            with self.store.connect() as con:
                for gid in unsent:  # never sent: nothing to look for, the next pass sends them
                    self.store.clear(con, "intents", "wave", self.entity, [gid])
        follow, succeeded = [], []
        own: list[tuple[str, str]] = []  # (id, modifiedAt) Wave answered: the read-back knows them (collect)
        answered = _written_at()
        with self.store.connect() as con:
            for row, ops in chunk:
                res = outcomes.get(row.gid)
                if res is None:
                    continue  # outcome unknown: the intent stays; found again before any new create
                if not res.ok and self.survive(con, row, res, result, now, run_id):
                    continue
                if not res.ok:
                    err = res.errors[0] if res.errors else None
                    self.fail(con, row, _error_field(self.entity, err.path if err else None),
                              (err.message if err else None) or "refused", result, now, run_id)
                    self.store.clear(con, "intents", "wave", self.entity, [row.gid])
                    continue
                new_id = (res.entity or {}).get("id") if row.op == "insert" else None
                succeeded.append((row, new_id))
                own.extend(_answered(res.entity))
                for op in ops[1:]:
                    data = dict(op.input)
                    for k in ("id", "invoiceId"):
                        if k in data and new_id:
                            data[k] = new_id
                    follow.append(Mutation(op.name, data, op.key))
            self.done_many(con, succeeded, result, now, run_id)
            self.store.record_own_writes(con, dataset("wave", self.entity), own, answered)
        if follow:
            try:
                with self.store.lent():
                    answers = self.client.mutate(follow)
                answered = _written_at()
                for res in answers:
                    if not res.ok:
                        result.messages.append(f"wave {self.entity} {res.key}: {res.name}: {res.errors}")
                own = [w for res in answers if res.ok for w in _answered(res.entity)]
                if own:
                    with self.store.connect() as con:
                        self.store.record_own_writes(con, dataset("wave", self.entity), own, answered)
            except TransientError as exc:  # the next pass sees the difference and sends it again
                result.messages.append(f"wave {self.entity} follow-up: {exc}")


def _written_at() -> datetime:
    """When a write the target answered is recorded: the clock, not the pass's `now` (which may be long before
    the write). A collect begun after it has read the write (`Datasets.read_back`); a full read begun after it
    that misses a created record records its delete (`Datasets.linked_never_seen`)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _answered(entity: dict[str, Any] | None) -> list[tuple[str, str]]:
    """`[(id, modifiedAt)]` of the record a Wave mutation answered with (none without both)."""
    if entity and entity.get("id") and entity.get("modifiedAt"):
        return [(str(entity["id"]), str(entity["modifiedAt"]))]
    return []


class _CrmPush(_TargetPush):
    system = "crm"

    def __init__(self, store: Store, entity: str, client: CrmApi) -> None:
        super().__init__(store, entity)
        self.client = client

    def run(self, rows: list[_Row], result: PushResult, now: datetime, run_id: str | None, policy: PushPolicy,
            progress: Callable[[str], None] | None) -> None:
        from crm_wave.systems.crm.client import CrmError, CrmNotFound, CrmNothingToWrite, CrmVersionMismatch

        rows = self.reject_invalid(rows, result, now, run_id)
        resource = CRM_RESOURCE[self.entity]
        with self.store.connect() as con:
            ids = pl.Series([row.share["target_id"] for row in rows if row.op == "update"], dtype=pl.String)
            versions = dict(self.store.read_rows(con, dataset("crm", self.entity), "_source_id", ids,
                                                 ["_source_id", "_version", "_seq"])
                            .sort("_seq").select("_source_id", "_version").iter_rows())
        for i, row in enumerate(rows, 1):
            body = canonical_to_crm(self.entity, row.values)
            body.pop("Total", None)
            key = f"crm-wave:{row.gid}"  # the CRM returns the first result for a retried key: safe to resend
            if row.op == "insert":
                if self.entity == "customer":
                    body["Type"] = row.values.get("Type") or "organization"
                body = {k: v for k, v in body.items() if v is not None}
                with self.store.connect() as con:
                    self.store.add_intents(con, "crm", self.entity, [(row.gid, key, row.cells)], now)
            try:
                with self.store.lent():
                    if row.op == "insert":
                        stored = self.client.create(resource, body, idempotency_key=key)
                    else:
                        stored = self.client.patch(resource, row.share["target_id"], body,
                                                   if_match=versions.get(row.share["target_id"]))
            except CrmVersionMismatch:
                result.skipped += 1
                result.messages.append(f"crm {self.entity} {row.share['target_id']}: changed since collected; "
                                       "merged on the next pass")
                continue
            except (CrmNotFound, CrmNothingToWrite):  # gone, or only fields this CRM does not keep
                result.skipped += 1
                continue
            except CrmError as exc:
                with self.store.connect() as con:
                    self.fail(con, row, exc.field, exc.message, result, now, run_id)
                    self.store.clear(con, "intents", "crm", self.entity, [row.gid])
                continue
            except TransientError as exc:
                result.unknown += 1
                result.messages.append(f"crm {self.entity} {row.gid}: {exc}")
                continue
            with self.store.connect() as con:
                self.done(con, row, str(stored["Id"]) if row.op == "insert" else None, result, now, run_id)
            if progress and (i % 100 == 0 or i == len(rows)):
                progress(f"crm {self.entity}: {i}/{len(rows)} sent ({100 * i // len(rows)}%)")


def _error_field(entity: str, path: list[str] | None) -> str | None:
    """The canonical field a Wave `inputErrors` path points at."""
    if not path:
        return None
    wave_field = ".".join(str(p) for p in path[1:] if not str(p).isdigit()) or None
    for name, f in canonical_fields(entity).items():
        if wave_field and (wave_field in f.inputs or wave_field == f.wave):
            return name
    return wave_field
