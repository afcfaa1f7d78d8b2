"""Reading and writing a CRM the way its profile describes (anything but the contract's own shape).

`ProfileConnector` does the work of `CrmClient`'s public methods for a profile that is not
contract-shaped: it pages (limit/offset, page number, `next` URL, `Link` header, cursor),
finds changes (updated-after filter, or a full read every time), sees deletes (soft-delete
field, or records missing from a full read), writes with POST/PUT/PATCH and reads back what a
create or update did not return, and translates records to and from the contract's canonical
PascalCase shape, so the sync sees one shape whatever the CRM.

A full read of an offset-paged listing whose order moves under concurrent writes is made
trustworthy by re-reading: a pass counts when it saw no id twice and (when the CRM reports a
count) the count did not change and equals what was read, or (without a count) it returned
the same ids as the pass before. docs/custom-crm.md has the measurements.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, UTC
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from crm_wave.logic.intents import CREATE_KEY_FIELD
from crm_wave.systems.http import OutcomeUnknown

from .profile import FieldRule, Profile, Source

if TYPE_CHECKING:
    from .client import CrmClient, CrmPage

__all__ = ["ProfileConnector", "get_path"]

_SYSTEM = ("Id", "Version", "UpdatedAt", "Deleted", CREATE_KEY_FIELD)
_log = logging.getLogger(__name__)


def get_path(data: Any, dotted: str) -> Any:
    """The value at a dotted path (`a.b.0.c`; "" = the data itself); None when absent."""
    if not dotted:
        return data
    cur = data
    for part in dotted.split("."):
        if isinstance(cur, dict):
            cur = cur.get(part)
        elif isinstance(cur, list) and part.isdigit():
            cur = cur[int(part)] if int(part) < len(cur) else None
        else:
            return None
    return cur


def _has_path(data: Any, dotted: str) -> bool:
    if not dotted:
        return True
    cur = data
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def _set_path(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _decimal_text(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return value  # left for validation to name
    return format(d, "f")


def _parse_ts(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _format_ts(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ProfileConnector:
    """The profile-driven half of `CrmClient` (one per client)."""

    def __init__(self, client: CrmClient, profile: Profile) -> None:
        self.client = client
        self.profile = profile
        #: Passes over whole listings so far (a quiet listing with a count needs one).
        self.full_passes = 0
        #: Sources whose CRM dropped the create key (`writes.create_key`), said once each.
        self.key_warnings: list[str] = []
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ sources and ids

    def _source_of(self, resource: str, id: str) -> tuple[Source, str]:
        sources = self.profile.sources(resource)
        for s in sources:
            if s.id_prefix and str(id).startswith(s.id_prefix):
                return s, str(id)[len(s.id_prefix):]
        if len(sources) == 1:
            return sources[0], str(id)
        raise self._invalid(f"Id: {id!r} carries none of the id prefixes of {resource} "
                            f"({', '.join(s.id_prefix for s in sources)})", "Id")

    def _source_for_body(self, resource: str, body: Mapping[str, Any]) -> Source:
        sources = self.profile.sources(resource)
        if len(sources) == 1:
            return sources[0]
        for s in sources:
            if all(str(body.get(k)) == v for k, v in s.when.items()):
                return s
        return sources[0]

    def _url(self, source: Source, remote_id: str | None = None, suffix: str = "") -> str:
        url = f"{self.client.base_url}/{source.path.strip('/')}"
        if remote_id is not None:
            url += f"/{quote(str(remote_id), safe='')}"
        if suffix:
            url += f"/{suffix.strip('/')}"
        return url + "/" if self.profile.trailing_slash else url

    def _invalid(self, message: str, field: str | None) -> Exception:
        from .client import CrmValidationError

        return CrmValidationError(f"CRM: {message}", status=422, code="profile", field=field, detail=message)

    def _shape_error(self, response: httpx.Response, what: str) -> Exception:
        from .client import CrmError

        return CrmError(f"CRM {response.request.method} {response.request.url.path}: {what}; the answer does not "
                        f"match the profile {self.profile.name!r} (see docs/custom-crm.md)", status=response.status_code)

    # ------------------------------------------------------------------ translation

    def _rules(self, source: Source) -> dict[str, FieldRule]:
        return dict(source.fields)

    def to_canonical(self, source: Source, raw: Mapping[str, Any]) -> dict[str, Any]:
        """A remote record in the contract's canonical shape."""
        rules = self._rules(source)
        if rules:
            out: dict[str, Any] = {}
            for name, rule in rules.items():
                out[name] = self._read_field(rule, raw)
        else:
            out = {k: v for k, v in raw.items() if k not in (source.id_field, source.lines.path if source.lines else "")}
        for name in source.drop:
            out.pop(name, None)
        if source.writes.create_key:
            if not rules:  # records as they are: the key's field is not a canonical one
                out.pop(source.writes.create_key.split(".")[0], None)
            key = get_path(raw, source.writes.create_key)
            if isinstance(key, str) and key:
                out[CREATE_KEY_FIELD] = key
        out.update(source.when)
        rid = get_path(raw, source.id_field)
        out["Id"] = None if rid is None else f"{source.id_prefix}{rid}"
        stamp = get_path(raw, source.changes.field)
        if stamp is not None:
            out["UpdatedAt"] = stamp
        version = get_path(raw, source.version_field)
        if isinstance(version, int) and not isinstance(version, bool):
            out["Version"] = version
        elif isinstance(stamp, str):
            # No version: the change timestamp in ms stands in, so an update can check the record
            # did not change since it was collected.
            try:
                out["Version"] = int(_parse_ts(stamp).timestamp() * 1000)
            except ValueError:
                pass
        if source.lines is not None:
            out["Lines"] = [self._line_to_canonical(source, line) for line in (get_path(raw, source.lines.path) or [])
                            if isinstance(line, dict)]
        return out

    def _read_field(self, rule: FieldRule, raw: Mapping[str, Any]) -> Any:
        if rule.kind == "const":
            return rule.value
        if rule.read_by_prefix:
            for prefix, path in rule.read_by_prefix.items():
                value = get_path(raw, path)
                if value not in (None, ""):
                    return f"{prefix}{value}"
            return None
        if rule.kind == "join":
            parts = [get_path(raw, r) for r in rule.remote.split()]
            return " ".join(str(p).strip() for p in parts if p not in (None, "") and str(p).strip()) or None
        value = get_path(raw, rule.remote)
        if rule.values and value is not None:
            value = rule.values.get(str(value), rule.values.get("*", value))
        if rule.kind == "not":
            return None if value is None else not value
        if rule.kind in ("decimal", "number"):
            return _decimal_text(value)
        if rule.ref and value is not None:
            return f"{self._ref_prefix(rule.ref)}{value}"
        return value

    def _ref_prefix(self, resource: str) -> str:
        sources = self.profile.sources(resource)
        return sources[0].id_prefix if len(sources) == 1 else ""

    def _line_to_canonical(self, source: Source, line: Mapping[str, Any]) -> dict[str, Any]:
        assert source.lines is not None
        rules = dict(source.lines.fields)
        if not rules:
            return dict(line)
        return {name: self._read_field(rule, line) for name, rule in rules.items()}

    def to_remote(self, source: Source, body: Mapping[str, Any], *, create: bool) -> dict[str, Any]:
        """A canonical body (or part of one) in the remote shape."""
        rules = self._rules(source)
        out: dict[str, Any] = dict(source.writes.create_defaults) if create else {}
        for name, value in body.items():
            if name in _SYSTEM or name in source.drop:
                continue
            if name in source.when:
                if value is not None and str(value) != source.when[name]:
                    raise self._invalid(f"{name}: {value!r} cannot be written to {source.path}, which holds "
                                        f"{name} = {source.when[name]!r} only", name)
                continue
            if name == "Lines" and source.lines is not None:
                _set_path(out, source.lines.path, [self._line_to_remote(source, line) for line in value or []])
                continue
            if not rules:
                out[name] = value
                continue
            rule = rules.get(name)
            if rule is None or rule.read_only or rule.kind in ("const", "join"):
                continue
            self._write_field(out, name, rule, value)
        return out

    def _write_field(self, out: dict[str, Any], name: str, rule: FieldRule, value: Any) -> None:
        if rule.values and value is not None:
            back = {v: k for k, v in rule.values.items() if k != "*"}
            value = back.get(value, value)
        if rule.kind == "not":
            value = None if value is None else not value
        elif rule.kind == "number" and isinstance(value, str):
            try:
                d = Decimal(value)
                value = int(d) if d == d.to_integral_value() else float(d)
            except InvalidOperation:
                pass
        if rule.remote_by_prefix:
            if value is None:
                return
            for prefix, remote in rule.remote_by_prefix.items():
                if str(value).startswith(prefix):
                    target, rid = self._source_of(rule.ref, str(value)) if rule.ref else (None, str(value)[len(prefix):])
                    _set_path(out, remote, int(rid) if target is not None and target.id_type == "int" and rid.isdigit() else rid)
                    return
            raise self._invalid(f"{name}: {value!r} has none of the prefixes {list(rule.remote_by_prefix)}", name)
        if rule.ref and isinstance(value, str):
            value = self._remote_ref(rule.ref, value)
        _set_path(out, rule.remote, value)

    def _remote_ref(self, resource: str, value: str) -> Any:
        """A canonical reference as the CRM wants it in a body (prefix off; a number for int ids)."""
        target, rid = self._source_of(resource, value)
        return int(rid) if target.id_type == "int" and rid.isdigit() else rid

    def _line_to_remote(self, source: Source, line: Mapping[str, Any]) -> dict[str, Any]:
        assert source.lines is not None
        rules = dict(source.lines.fields)
        out: dict[str, Any] = {}
        for key, default in source.lines.defaults.items():
            if isinstance(default, str) and default.startswith("="):
                options = [line.get(f.strip()) for f in default[1:].split("|")]
                out[key] = next((o for o in options if o not in (None, "")), None)
                if out[key] is None and "|" in default:
                    out[key] = default.rsplit("|", 1)[1].strip().strip("'\"")
            else:
                out[key] = default
        if not rules:
            out.update(line)
            return out
        for name, value in line.items():
            rule = rules.get(name)
            if rule is None or rule.read_only:
                continue
            if value is None:
                continue  # lines are replaced whole: an absent value is the CRM's default
            self._write_field(out, name, rule, value)
        return out

    def canonical_field(self, source: Source, remote: str | None) -> str | None:
        """The canonical name of a remote field an error names (`line_items.0.quantity` -> `Lines[0].Quantity`)."""
        if remote is None:
            return None
        reverse = {r.remote: n for n, r in source.fields.items()}
        for n, r in source.fields.items():
            for target in r.remote_by_prefix.values():
                reverse[target] = n
        if source.lines is not None:
            head = source.lines.path
            if remote == head or remote.startswith(head + ".") or remote.startswith(head + "["):
                rest = remote[len(head):].lstrip(".")
                index, _, field = rest.partition(".")
                index = index.strip("[]")
                lines = {r.remote: n for n, r in source.lines.fields.items()}
                out = "Lines" + (f"[{index}]" if index.isdigit() else "")
                return out + (f".{lines.get(field, field)}" if field else "")
        return reverse.get(remote, remote)

    # ------------------------------------------------------------------ HTTP

    def _send(self, source: Source, method: str, url: str, *, params: Mapping[str, Any] | None = None,
              json_body: Any = None, headers: Mapping[str, str] | None = None, allow: frozenset[int] | set[int] = frozenset(),
              idempotent: bool = True) -> httpx.Response:
        from .client import CrmError

        try:
            return self.client._send(method, url, params=params, json=json_body, headers=headers, allow=allow,
                                     idempotent=idempotent)
        except CrmError as exc:
            exc.field = self.canonical_field(source, exc.field)
            raise

    def _body(self, response: httpx.Response) -> Any:
        return self.client._json(response)

    # ------------------------------------------------------------------ reads

    def _records(self, source: Source, response: httpx.Response, data: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for path in source.paging.records:
            if not _has_path(data, path):
                raise self._shape_error(response, f"no record list at {path!r} (paging.records)")
            items = get_path(data, path)
            if items is None:
                continue
            if not isinstance(items, list):
                raise self._shape_error(response, f"{path!r} is not a list (paging.records)")
            out.extend(i for i in items if isinstance(i, dict))
        return out

    def _count(self, source: Source, data: Any) -> int | None:
        if not source.paging.count:
            return None
        total = 0
        for path in source.paging.count:
            value = get_path(data, path)
            if not isinstance(value, int):
                return None
            total += value
        return total

    def _pages(self, source: Source, extra: Mapping[str, Any],
               page_size: int | None = None) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """(records, reported count) per page of one pass over the listing."""
        p = source.paging
        size = page_size or p.page_size
        url: str | None = self._url(source)
        params: dict[str, Any] | None = {p.limit_param: size, **extra}
        offset, page = 0, p.first_page
        for _ in range(1_000_000):
            if p.style == "offset":
                params = {**(params or {}), p.offset_param: offset}
            elif p.style == "page":
                params = {**(params or {}), p.page_param: page}
            assert url is not None
            response = self._send(source, "GET", url, params=params)
            data = self._body(response)
            records = self._records(source, response, data)
            yield records, self._count(source, data)
            if p.style in ("offset", "page"):
                per_path = [get_path(data, path) or [] for path in p.records]
                if all(len(items) < size for items in per_path):
                    return
                offset += size
                page += 1
            elif p.style == "next_url":
                nxt = get_path(data, p.next_url)
                if not nxt:
                    return
                url, params = str(nxt), None
            elif p.style == "link_header":
                nxt = response.links.get("next", {}).get("url")
                if not nxt:
                    return
                url, params = str(httpx.URL(url).join(nxt)), None
            else:  # pragma: no cover - cursor sources go through _feed
                raise AssertionError(p.style)
        raise self._shape_error(response, "the listing never ended")  # type: ignore[possibly-undefined]  # pragma: no cover

    def _one_pass(self, source: Source, extra: Mapping[str, Any],
                  page_size: int | None = None) -> tuple[dict[str, dict[str, Any]], bool, list[int | None]]:
        seen: dict[str, dict[str, Any]] = {}
        repeated = False
        counts: list[int | None] = []
        for records, count in self._pages(source, extra, page_size):
            counts.append(count)
            for raw in records:
                rid = get_path(raw, source.id_field)
                if rid is None:
                    continue
                key = str(rid)
                if key in seen:
                    repeated = True
                seen[key] = raw
        return seen, repeated, counts

    def full_read(self, source: Source) -> list[dict[str, Any]]:
        """Every record of a source (raw), from a pass proven complete (see the module docstring)."""
        p = source.paging
        previous: set[str] | None = None
        union: dict[str, dict[str, Any]] = {}
        size = p.page_size
        for _attempt in range(p.max_passes):
            seen, repeated, counts = self._one_pass(source, {}, size)
            self.full_passes += 1
            union.update(seen)
            known = [c for c in counts if c is not None]
            if not repeated:
                if known and len(known) == len(counts) and min(known) == max(known) == len(seen):
                    return list(seen.values())
                if not known and previous is not None and previous == set(seen):
                    return list(seen.values())
                if not known and source.paging.max_passes == 1:
                    return list(seen.values())
            previous = set(seen)
            size = min(size * 4, max(p.max_page_size, p.page_size))
        # Never provably complete (writes all the time): every record any pass saw, once. A record
        # deleted meanwhile is in it (its delete shows on the next read); one skipped by every pass
        # would read as deleted, and deletes are held for approval, never pushed unasked.
        return list(union.values())

    def _detail(self, source: Source, raw: dict[str, Any]) -> dict[str, Any] | None:
        if not source.detail:
            return raw
        return self._get_raw(source, str(get_path(raw, source.id_field)))

    def _deleted(self, source: Source, raw: Mapping[str, Any]) -> bool:
        return source.deletes.mode == "field" and get_path(raw, source.deletes.field) == source.deletes.value

    def _canonical_items(self, source: Source, raws: list[dict[str, Any]], *, tombstones: bool) -> list[dict[str, Any]]:
        items = []
        for raw in raws:
            if self._deleted(source, raw):
                if tombstones:
                    items.append({"Id": f"{source.id_prefix}{get_path(raw, source.id_field)}", "Deleted": True})
                continue
            full = self._detail(source, raw)
            if full is not None:
                items.append(self.to_canonical(source, full))
        return items

    def read_source(self, source: Source, since: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """Canonical records (soft-deleted ones as tombstones) and the cursor to continue from."""
        if source.changes.mode == "feed":
            return self._feed(source, since)
        if source.changes.mode == "updated_after" and since:
            after = _format_ts(_parse_ts(since) - timedelta(seconds=source.changes.overlap_s))
            seen, _, _ = self._one_pass(source, {source.changes.param: after})
            raws = list(seen.values())
        else:
            raws = self.full_read(source)
        items = self._canonical_items(source, raws, tombstones=True)
        if source.changes.mode != "updated_after":
            return items, None
        stamps = [get_path(r, source.changes.field) for r in raws]
        newest = max((s for s in stamps if isinstance(s, str)), key=_parse_ts, default=None)
        if newest is None or (since and _parse_ts(newest) <= _parse_ts(since)):
            return items, since
        return items, newest

    def _feed(self, source: Source, since: str | None) -> tuple[list[dict[str, Any]], str | None]:
        p = source.paging
        cursor = since
        items: list[dict[str, Any]] = []
        url = self._url(source)
        while True:
            params: dict[str, Any] = {p.limit_param: p.page_size}
            if cursor is not None:
                params[p.cursor_param] = cursor
            response = self._send(source, "GET", url, params=params)
            data = self._body(response)
            for raw in self._records(source, response, data):
                if get_path(raw, source.deletes.field) is True:
                    items.append({"Id": f"{source.id_prefix}{get_path(raw, source.id_field)}", "Deleted": True})
                else:
                    items.append(self.to_canonical(source, raw))
            nxt = get_path(data, p.next_cursor)
            more = bool(get_path(data, p.has_more))
            if nxt:
                if more and nxt == cursor:
                    raise self._shape_error(response, "has_more without a new cursor")
                cursor = str(nxt)
            if not more:
                return items, cursor

    def read_changes(self, resource: str, since: str | None) -> Iterator[CrmPage]:
        """One page per source: its records (and tombstones) since `since`, with the combined cursor."""
        from .client import CrmPage

        sources = self.profile.sources(resource)
        if len(sources) == 1:
            items, cursor = self.read_source(sources[0], since)
            yield CrmPage(items=items, next_cursor=cursor, has_more=False)
            return
        cursors: dict[str, str | None] = json.loads(since) if since else {}
        for i, source in enumerate(sources):
            items, cursors[source.id_prefix] = self.read_source(source, cursors.get(source.id_prefix))
            done = i == len(sources) - 1
            combined = json.dumps(cursors, sort_keys=True) if any(cursors.values()) else None
            yield CrmPage(items=items, next_cursor=combined if done else None, has_more=not done)

    def probe(self, resource: str) -> None:
        """One request for one record of `resource`'s first source: URL, token and shape are right."""
        source = self.profile.sources(resource)[0]
        next(self._pages(source, {}, page_size=1), None)

    def always_full(self, resource: str) -> bool:
        """Whether every read of `resource` is a full read (no way to ask for changes only)."""
        return all(s.changes.mode == "none" for s in self.profile.sources(resource))

    def read_all(self, resource: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for source in self.profile.sources(resource):
            if source.changes.mode == "feed":
                items, _ = self._feed(source, None)
                out.extend(i for i in items if not i.get("Deleted"))
            else:
                out.extend(self._canonical_items(source, self.full_read(source), tombstones=False))
        return out

    def _get_raw(self, source: Source, remote_id: str) -> dict[str, Any] | None:
        response = self._send(source, "GET", self._url(source, remote_id), allow={404})
        if response.status_code == 404:
            return None
        data = self._body(response)
        if source.item_path and not _has_path(data, source.item_path):
            raise self._shape_error(response, f"no record at {source.item_path!r} (item_path)")
        raw = get_path(data, source.item_path)
        if not isinstance(raw, dict):
            raise self._shape_error(response, "the record is not an object")
        return None if self._deleted(source, raw) else raw

    def get(self, resource: str, id: str) -> dict[str, Any] | None:
        source, remote_id = self._source_of(resource, id)
        raw = self._get_raw(source, remote_id)
        return None if raw is None else self.to_canonical(source, raw)

    # ------------------------------------------------------------------ writes

    def _auth_headers(self, source: Source, idempotency_key: str | None) -> dict[str, str]:
        h = source.writes.idempotency_header
        return {h: idempotency_key} if h and idempotency_key else {}

    def _companions(self, source: Source, body: dict[str, Any]) -> None:
        """Fill remote fields the CRM needs alongside a reference (e.g. an invoice's contact for its account)."""
        for name, rule in source.fields.items():
            for prefix, spec in rule.companions.items():
                field, _, path = spec.partition("=")
                owner_remote = rule.remote_by_prefix.get(prefix)
                if not owner_remote or get_path(body, owner_remote) is None or get_path(body, field.strip()) is not None:
                    continue
                target, remote_id = self._source_of(rule.ref, f"{prefix}{get_path(body, owner_remote)}")
                response = self._send(target, "GET", self._url(target, remote_id), allow={404})
                value = get_path(self._body(response), path.strip()) if response.status_code != 404 else None
                if value in (None, ""):
                    raise self._invalid(f"{name}: the CRM needs {field.strip()} with {owner_remote} and the "
                                        f"{target.path} record {remote_id} has none ({path.strip()})", name)
                _set_path(body, field.strip(), value)

    def create(self, resource: str, body: Mapping[str, Any], idempotency_key: str | None) -> dict[str, Any]:
        source = self._source_for_body(resource, body)
        remote = self.to_remote(source, body, create=True)
        self._companions(source, remote)
        w = source.writes
        if w.create_key and idempotency_key:
            # The CRM numbers the record itself: our key, kept in the record, finds it again if the
            # answer is lost (the intent holds the same key).
            _set_path(remote, w.create_key, idempotency_key)
        headers = self._auth_headers(source, idempotency_key)
        response = self._send(source, "POST", self._url(source), json_body=remote, headers=headers,
                              idempotent=bool(headers))
        data = self._body(response) if response.content.strip() else None
        raw: Any = None
        if w.create_returns == "record":
            raw = get_path(data, w.record_path)
            if not (isinstance(raw, dict) and get_path(raw, source.id_field) is not None):
                raw = None
        if raw is None:
            rid = get_path(data, w.id_path) if w.create_returns == "id" else None
            if rid is None:
                # The record exists but we cannot tell its id: keep the intent, the next collect links it.
                raise OutcomeUnknown(f"crm: POST {response.request.url.path} answered {response.status_code} without "
                                     f"{'the record at ' + repr(w.record_path) if w.create_returns == 'record' else 'an id at ' + repr(w.id_path)}; "
                                     "the record is found by its key on the next collect")
            raw = self._get_raw(source, str(rid))
            if raw is None:
                raise OutcomeUnknown(f"crm: created {source.path} {rid} cannot be read back")
        if w.create_key and idempotency_key and get_path(raw, w.create_key) != idempotency_key:
            self._key_not_kept(source)
        return self.to_canonical(source, raw)

    def _key_not_kept(self, source: Source) -> None:
        """Say once per source that the CRM dropped the create key (the record is linked all the same)."""
        if source.path in self._warned:
            return
        self._warned.add(source.path)
        _log.warning("CRM profile %r: %s did not keep the create key at %r (writes.create_key): make that field "
                     "exist in the CRM (see docs/custom-crm.md); until then a push killed mid-create may create "
                     "a record twice", self.profile.name, source.path, source.writes.create_key)
        self.key_warnings.append(f"{source.path}: create key {source.writes.create_key!r} not kept by the CRM")

    def patch(self, resource: str, id: str, body: Mapping[str, Any], if_match: int | None) -> dict[str, Any]:
        from .client import CrmVersionMismatch

        source, remote_id = self._source_of(resource, id)
        w = source.writes
        if w.update == "none":
            raise self._invalid(f"record: this CRM does not allow updating {source.path}", None)
        remote = self.to_remote(source, body, create=False)
        if not remote:
            from .client import CrmNothingToWrite

            raise CrmNothingToWrite(f"CRM {source.path} {remote_id}: {', '.join(body)}: not stored by this CRM "
                                    f"(profile {self.profile.name!r}); nothing sent", status=0)
        headers: dict[str, str] = {}
        if if_match is not None:
            if w.if_match_header:
                headers[w.if_match_header] = str(if_match)
            else:
                current = self.get(resource, id)
                if current is not None and current.get("Version") not in (None, if_match):
                    raise CrmVersionMismatch(f"CRM {source.path} {remote_id}: changed since it was collected",
                                             status=412, code="version_mismatch", field="Version")
        response = self._send(source, w.update, self._url(source, remote_id), json_body=remote, headers=headers)
        if w.update_returns == "record":
            data = self._body(response) if response.content.strip() else None
            raw = get_path(data, w.record_path)
            if isinstance(raw, dict) and get_path(raw, source.id_field) is not None:
                return self.to_canonical(source, raw)
        got = self.get(resource, id)
        if got is None:
            from .client import CrmNotFound

            raise CrmNotFound(f"CRM {source.path} {remote_id}: gone after the update", status=404)
        return got

    def delete(self, resource: str, id: str) -> None:
        from .client import CrmNotFound

        source, remote_id = self._source_of(resource, id)
        if not source.writes.delete:
            raise self._invalid(f"record: this CRM does not allow deleting {source.path}", None)
        response = self._send(source, "DELETE", self._url(source, remote_id), allow={404})
        if response.status_code == 404:
            from .client import _attempts

            if _attempts(response) > 1:
                return
            raise CrmNotFound(f"CRM DELETE {response.request.url.path}: HTTP 404", status=404)
