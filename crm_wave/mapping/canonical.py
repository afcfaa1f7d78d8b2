"""Map raw CRM and Wave records to canonical records, and canonical records back out.

A canonical record is a flat dict keyed by the CRM field names of `flows.py`, every
value normalised. References (`CustomerId`, line `ProductId`) stay in the source
system's ids here; the global step translates them through the link tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from crm_wave.mapping.flows import FieldMap, flows_for
from crm_wave.mapping.normalize import canonical, canonical_series

__all__ = [
    "canonical_fields",
    "crm_to_canonical",
    "wave_to_canonical",
    "customer_type_from_wave",
    "person_name",
    "canonical_to_crm",
    "canonical_to_wave_input",
    "canonical_from_fragments",
    "exact_cells",
    "source_slots",
    "UnreadableRecord",
    "LINE_DTYPE",
    "LINES_PATH",
    "LINE_SLOTS",
]

_LINE_KINDS = {"ProductId": "text", "Description": "text", "Quantity": "decimal8", "UnitPrice": "decimal8"}


class UnreadableRecord(ValueError):
    """A collected record whose body the mapping cannot read (its lines not a list of objects): the message
    names the record and the field. Raised where no one holds the record back; the global step holds it
    (`read_canonical`'s `unreadable`) and says so with `held`."""

    def __init__(self, record: str, what: str, where: str) -> None:
        self.record, self.what, self.where = record, what, where
        super().__init__(f"{record}: {what}; fix the record in {where}: until then every sync of its type stops "
                         f"at this record")

    def held(self, kept: bool, modified: str | None = None) -> str:
        """The message once the sync holds the record: `kept` at its newest readable version (`modified` that
        version's, if known), or left out when no version of it can be read."""
        how = ("the sync keeps its last readable version" + (f" (modified {modified})" if modified else "") if kept
               else "the sync leaves it out (no version of it can be read)")
        return f"{self.record}: {self.what}; fix the record in {self.where}: until then {how}"


def _unreadable(system: str, entity: str, body: Any, exc: Exception) -> UnreadableRecord:
    node = body if isinstance(body, dict) else {}
    key = LINES_PATH[system]
    lines = node.get(key)
    what = f"cannot be read ({type(exc).__name__}: {exc})"
    if entity == "order" and lines is not None:
        if not isinstance(lines, list):
            what = f"{key}: not a list but {json.dumps(lines, ensure_ascii=False)[:60]}"
        elif (bad := next((i for i, line in enumerate(lines, 1) if not isinstance(line, dict)), None)) is not None:
            what = f"{key}: line {bad} is not an object but {json.dumps(lines[bad - 1], ensure_ascii=False)[:60]}"
    return UnreadableRecord(f"{system} {entity} {node.get('Id' if system == 'crm' else 'id')}", what,
                            "the CRM" if system == "crm" else "Wave")


def canonical_fields(entity: str) -> dict[str, FieldMap]:
    """Every canonical field of entity stem `entity`, first flow's row winning."""
    out: dict[str, FieldMap] = {}
    for flow in flows_for(entity):
        for f in flow.fields:
            out.setdefault(f.name, f)
    return out


def _path(node: dict[str, Any] | None, dotted: str) -> Any:
    cur: Any = node
    for part in dotted.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def person_name(first: str | None, last: str | None) -> str | None:
    """`FirstName` + " " + `LastName`, the derived name of a person customer."""
    return " ".join(p for p in (first, last) if p) or None


def customer_type_from_wave(node: dict[str, Any]) -> str:
    """The CRM `Type` for a Wave customer new to the CRM (mappings.md, flow 2).

    "person" when it has a first or last name and its name is empty or equal to
    "firstName lastName"; otherwise "organization".
    """
    first = canonical("text", node.get("firstName"))
    last = canonical("text", node.get("lastName"))
    name = canonical("text", node.get("name"))
    if (first or last) and (name is None or name == person_name(first, last)):
        return "person"
    return "organization"


def _norm_lines(lines: Any) -> list[dict[str, Any]]:
    out = []
    for line in lines or []:
        out.append({k: canonical(kind, line.get(k)) for k, kind in _LINE_KINDS.items()})
    return out


def _special(kind: str, value: Any, system: str) -> Any:
    if kind.startswith("ref:"):
        return canonical("text", value)
    if kind == "order_status":
        s = canonical("text", value)
        if system == "wave":
            return None if s is None else ("draft" if s.upper() == "DRAFT" else "confirmed")
        return s.lower() if s else "draft"
    if kind == "payment_status":
        s = canonical("text", value)
        if s is None:
            return None
        s = s.lower()
        return "unpaid" if s == "saved" else s
    return canonical(kind, value)


def crm_to_canonical(entity: str, body: dict[str, Any]) -> dict[str, Any]:
    """Canonical record of a CRM entity body."""
    out: dict[str, Any] = {}
    for name, f in canonical_fields(entity).items():
        if f.kind == "lines":
            out[name] = _norm_lines(body.get("Lines"))
        else:
            out[name] = _special(f.kind, body.get(name), "crm")
    if entity == "customer":
        out["Type"] = canonical("text", body.get("Type")) or "organization"
    return out


def wave_to_canonical(entity: str, node: dict[str, Any]) -> dict[str, Any]:
    """Canonical record of a Wave node (customer, product or invoice)."""
    out: dict[str, Any] = {}
    for name, f in canonical_fields(entity).items():
        if f.kind == "lines":
            out[name] = _norm_lines(
                {"ProductId": _path(i, "product.id"), "Description": i.get("description"),
                 "Quantity": i.get("quantity"), "UnitPrice": i.get("unitPrice")}
                for i in (node.get("items") or [])
            )
        else:
            out[name] = _special(f.kind, _path(node, f.wave), "wave")
    if entity == "customer":
        out["Type"] = customer_type_from_wave(node)
    return out


def canonical_to_crm(entity: str, values: dict[str, Any]) -> dict[str, Any]:
    """CRM body for the canonical `values` given (references already in CRM ids)."""
    body: dict[str, Any] = {}
    for name, v in values.items():
        if name == "Lines":
            body["Lines"] = [dict(line) for line in v]
        else:
            body[name] = v
    return body


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        target = target.setdefault(p, {})
    target[parts[-1]] = value


def canonical_to_wave_input(entity: str, values: dict[str, Any]) -> dict[str, Any]:
    """Wave mutation input fields for canonical `values` (references already in Wave ids).

    Only fields of direction "both" are written; `Status` is not an input field (it is
    moved by `invoiceApprove`), and one-way fields are read-only to the sync in Wave.
    """
    fields = canonical_fields(entity)
    out: dict[str, Any] = {}
    for name, v in values.items():
        f = fields.get(name)
        if f is None or f.direction != "both" or f.kind == "order_status":
            continue
        if f.kind == "lines":
            out["items"] = [
                {"productId": line["ProductId"], "description": line["Description"],
                 "quantity": line["Quantity"], "unitPrice": line["UnitPrice"]}
                for line in v
            ]
        elif name == "IsArchived":
            continue  # productArchive, never an input field
        else:
            for path in f.inputs:
                _set(out, path, v)
    return out


# ---- vectorised: canonical records of many raw records at once ------------------------
#
# The collected datasets hold each record's JSON body. The global step asks the database
# for the JSON fragment of every slot the mapping reads (`source_slots`: dotted paths; the
# order lines as a list of structs), and `canonical_from_fragments` turns those fragments
# into canonical cells with polars expressions. A row whose fragments are anything but
# strings and nulls where strings are expected (a number in a text field, an escaped
# character, lines that are not a list of objects...) is mapped by `crm_to_canonical` /
# `wave_to_canonical` from its body instead, so both paths give the same cells.

#: Item paths of an order line, per system: canonical line field -> dotted path in the item.
# Up to this many rows, the exact path (the Python mapping of each body) costs less than the
# vectorised one's fixed cost: ~40 polars calls per field. Measured in docs/benchmarks.md.
SMALL = 64

LINE_SLOTS = {
    "crm": {"Description": "Description", "ProductId": "ProductId", "Quantity": "Quantity", "UnitPrice": "UnitPrice"},
    "wave": {"Description": "description", "ProductId": "product.id", "Quantity": "quantity", "UnitPrice": "unitPrice"},
}
#: Where the lines are in a raw record.
LINES_PATH = {"crm": "Lines", "wave": "items"}
LINE_FIELDS = ("Description", "ProductId", "Quantity", "UnitPrice")  # sorted: the order of a lines cell
LINE_DTYPE = pl.Struct({f: pl.String for f in LINE_FIELDS})


def source_slots(system: str, entity: str) -> dict[str, str]:
    """Canonical field -> dotted path of its raw value (lines excluded; see `LINES_PATH`)."""
    out: dict[str, str] = {}
    for name, f in canonical_fields(entity).items():
        if f.kind != "lines":
            out[name] = name if system == "crm" else f.wave
    if entity == "customer" and system == "crm":
        out["Type"] = "Type"
    return out


def _decoded(frag: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(string value or None, True where the fragment is not a plain string or null)."""
    plain = frag.str.starts_with('"') & ~frag.str.contains("\\", literal=True)
    value = pl.select(pl.when(plain).then(frag.str.slice(1, frag.str.len_chars() - 2))).to_series()
    return value.alias(frag.name), (frag.is_not_null() & ~plain).fill_null(False)


def _bool_decoded(frag: pl.Series) -> tuple[pl.Series, pl.Series]:
    value = (frag == "true").fill_null(False)
    return value.alias(frag.name), (frag.is_not_null() & ~frag.is_in(["true", "false"])).fill_null(False)


def _cells(kind: str, value: pl.Series, system: str) -> pl.Series:
    if kind == "bool":
        return pl.select(pl.when(value).then(pl.lit("true")).otherwise(pl.lit("false"))).to_series().alias(value.name)
    if kind.startswith("ref:"):
        return canonical_series("text", value)
    if kind in ("order_status", "payment_status"):
        s = canonical_series("text", value)
        if kind == "order_status" and system == "wave":
            expr = pl.when(s.is_null()).then(None).when(s.str.to_uppercase() == "DRAFT").then(pl.lit("draft")) \
                .otherwise(pl.lit("confirmed"))
        elif kind == "order_status":
            expr = pl.when(s.is_null()).then(pl.lit("draft")).otherwise(s.str.to_lowercase())
        else:
            low = s.str.to_lowercase()
            expr = pl.when(low == "saved").then(pl.lit("unpaid")).otherwise(low)
        out = pl.select(expr).to_series().alias(value.name)
        # str.upper()/lower() of non-ASCII text: leave it to Python.
        fn = (lambda v: _special(kind, v, system))  # noqa: E731
        return _patch_series(out, s.str.contains(r"[^\x00-\x7f]"), value, fn)
    return canonical_series(kind, value)


def _patch_series(out: pl.Series, mask: pl.Series, source: pl.Series, fn: Any) -> pl.Series:
    idx = mask.fill_null(False).arg_true()
    if idx.len() == 0:
        return out
    return out.scatter(idx, pl.Series([fn(v) for v in source.gather(idx).to_list()], dtype=out.dtype))


def _lines(frags: pl.Series, ok: pl.Series, system: str) -> tuple[pl.Series, pl.Series]:
    """Normalised lines (List of LINE_DTYPE, [] for none) and the rows that need the slow path."""
    n = frags.len()
    slots = LINE_SLOTS[system]
    rows = pl.DataFrame({"_r": pl.int_range(0, n, eager=True)})
    exploded = pl.DataFrame({"_r": rows["_r"], "_l": frags}).explode("_l")
    present = exploded["_l"].is_not_null()
    items = exploded.unnest("_l") if exploded.height else exploded
    bad = pl.Series([False] * exploded.height, dtype=pl.Boolean)
    cols = {}
    for name in LINE_FIELDS:
        frag = items[slots[name].replace(".", "__")].cast(pl.String) if exploded.height else pl.Series([], dtype=pl.String)
        value, wrong = _decoded(frag)
        bad = bad | wrong
        cols[name] = canonical_series("decimal8" if name in ("Quantity", "UnitPrice") else "text", value)
    elements = pl.DataFrame({"_r": exploded["_r"], "_present": present, "_b": bad,
                             "_line": pl.DataFrame(cols, schema=dict.fromkeys(LINE_FIELDS, pl.String)).to_struct()})
    grouped = elements.group_by("_r").agg(pl.col("_line").filter(pl.col("_present")), pl.col("_b").any())
    full = rows.join(grouped, on="_r", how="left", maintain_order="left")
    out = full["_line"].cast(pl.List(LINE_DTYPE)).fill_null(pl.lit([], dtype=pl.List(LINE_DTYPE))).alias("Lines")
    return out, (full["_b"].fill_null(False) | ~ok.fill_null(False))


def canonical_from_fragments(frags: pl.DataFrame, system: str, entity: str,
                             bodies: pl.Series | Callable[[pl.Series], pl.Series],
                             fields_wanted: tuple[str, ...] | None = None,
                             unreadable: dict[int, UnreadableRecord] | None = None) -> pl.DataFrame:
    """Canonical cells of raw records given as JSON fragments (see the module note above).

    `frags` has one String column per `source_slots` path (the JSON text of the value,
    null when absent or null) and, for orders, `Lines` (a list of structs of the item's
    fragments, item paths with "." spelled "__") and `lines_ok` (the raw lines are null
    or a list of objects). `bodies` holds each row's JSON body, for the slow path (or
    is a function from row numbers to those rows' bodies, so that only they are fetched).
    Returns one String column per canonical field (`Lines`: a list of `LINE_DTYPE`,
    product ids as in the source), plus `Type` for customers; just `fields_wanted` if given.
    `unreadable`: see `exact_cells` (positions are rows of `frags`).
    """
    fields = canonical_fields(entity)
    order = [*[f for f in fields], *(["Type"] if entity == "customer" else [])]
    if fields_wanted is not None:
        order = [c for c in order if c in fields_wanted]
    n = frags.height
    if n <= SMALL:  # the exact path costs less than the vectorised one's fixed cost
        schema = {c: pl.List(LINE_DTYPE) if fields.get(c) is not None and fields[c].kind == "lines" else pl.String
                  for c in order}
        return _exact(schema, pl.Series(range(n), dtype=pl.UInt32), system, entity, bodies, order, unreadable)
    slots = source_slots(system, entity)
    if fields_wanted is not None:
        slots = {k: v for k, v in slots.items() if k in fields_wanted}
    bad = pl.Series([False] * n)
    out: dict[str, pl.Series] = {}
    for name, path in slots.items():
        kind = "text" if name == "Type" else fields[name].kind
        frag = frags[path]
        value, wrong = (_bool_decoded if kind == "bool" else _decoded)(frag)
        bad = bad | wrong
        out[name] = _cells(kind, value.alias(name), system).alias(name)
    if entity == "customer" and (fields_wanted is None or "Type" in fields_wanted):
        if system == "crm":
            out["Type"] = out["Type"].fill_null("organization")
        else:
            first, last, nm = out["FirstName"], out["LastName"], out["Name"]
            person = pl.select(pl.concat_str([first, last], separator=" ", ignore_nulls=True)).to_series()
            is_person = (first.is_not_null() | last.is_not_null()) & (nm.is_null() | (nm == person)).fill_null(False)
            out["Type"] = pl.select(pl.when(is_person).then(pl.lit("person")).otherwise(pl.lit("organization"))).to_series()
    lines_name = next((n_ for n_, f in fields.items() if f.kind == "lines"), None)
    if lines_name is not None and (fields_wanted is None or lines_name in fields_wanted):
        out[lines_name], lines_bad = _lines(frags["Lines"], frags["lines_ok"], system)
        bad = bad | lines_bad
    frame = pl.DataFrame([out[c].alias(c) for c in order])
    idx = bad.arg_true()
    if idx.len():
        patch = _exact(frame.schema, idx, system, entity, bodies, order, unreadable)
        frame = pl.concat([frame.with_row_index("_i").filter(~bad), patch.with_columns(idx.cast(pl.UInt32).alias("_i"))
                           .select("_i", *order)]).sort("_i").drop("_i")
    return frame


def _exact(schema: Mapping[str, Any], idx: pl.Series, system: str, entity: str,
           bodies: pl.Series | Callable[[pl.Series], pl.Series], order: list[str],
           unreadable: dict[int, UnreadableRecord] | None = None) -> pl.DataFrame:
    """Rows `idx` mapped by the exact path (`crm_to_canonical`/`wave_to_canonical` of the body), in `schema`."""
    found: dict[int, UnreadableRecord] | None = None if unreadable is None else {}
    rows = exact_cells((bodies(idx) if callable(bodies) else bodies.gather(idx)).to_list(), system, entity, order, found)
    if found:
        assert unreadable is not None
        positions = idx.to_list()
        unreadable.update({positions[i]: e for i, e in found.items()})
    return pl.DataFrame(rows, schema=schema, orient="row")


def exact_cells(bodies: Iterable[str | None], system: str, entity: str, order: Sequence[str],
                unreadable: dict[int, UnreadableRecord] | None = None) -> list[dict[str, Any]]:
    """The canonical cells of each JSON body (None: every cell null), by the exact path, as dicts keyed by `order`
    (`Lines` a list of line dicts, product ids as in the source). A body the mapping cannot read raises
    `UnreadableRecord`, or, given `unreadable`, is entered there by its position (its cells all null)."""
    fields = canonical_fields(entity)
    to_canonical = crm_to_canonical if system == "crm" else wave_to_canonical
    lines = {c for c in order if fields.get(c) is not None and fields[c].kind == "lines"}
    out = []
    for i, body in enumerate(bodies):
        data = json.loads(body) if body is not None else None
        try:
            rec = to_canonical(entity, data) if data is not None else {}
        except (AttributeError, TypeError) as exc:  # a shape the mapping cannot read: name the record and the field
            if unreadable is None:
                raise _unreadable(system, entity, data, exc) from exc
            unreadable[i] = _unreadable(system, entity, data, exc)
            rec = {}
        out.append({c: (rec.get(c) if c in lines else _cell(rec.get(c))) for c in order})
    return out


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
