"""CRM profiles: how one CRM's REST API is shaped, described in a TOML file instead of code.

A profile names, per canonical resource (`customers`, `products`, `orders`), the remote
resource(s) behind it and how to page, detect changes, see deletes, write, authenticate
and rename fields. `load_profile(name_or_path)` reads a shipped profile
(`crm_wave/systems/crm/profiles/<name>.toml`) or a file, validates it with pydantic and
raises `ProfileError` naming the key (`customers[0].paging.style: ...`) on anything it
does not understand. docs/custom-crm.md documents every key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "CANONICAL_RESOURCES",
    "DEFAULT_PROFILE",
    "PROFILE_DIR",
    "Auth",
    "Changes",
    "Deletes",
    "FieldRule",
    "Lines",
    "Paging",
    "Profile",
    "ProfileError",
    "Source",
    "Writes",
    "load_profile",
    "parse_profile",
    "profile_from_env",
    "shipped_profiles",
]

PROFILE_DIR = Path(__file__).with_name("profiles")
DEFAULT_PROFILE = "contract"
CANONICAL_RESOURCES = ("customers", "products", "orders")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the key and what to do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Auth(_Strict):
    """How requests authenticate; the secret itself comes from `token_env`, never the file."""

    #: bearer: `Authorization: Bearer T`; header: `<header>: <scheme> T`; query: `?<param>=T`;
    #: basic: HTTP basic with `username` and the token as password.
    kind: Literal["bearer", "header", "query", "basic"] = "bearer"
    header: str = "Authorization"
    scheme: str = ""
    param: str = "api_key"
    username: str = ""


class Paging(_Strict):
    """How a listing is paged and where its records are."""

    style: Literal["cursor", "offset", "page", "next_url", "link_header"] = "cursor"
    #: Dotted paths of the record lists in a page ("" = the body itself is the list).
    records: list[str] = ["items"]
    #: Dotted paths of the total record count (summed); lets one offset pass prove itself complete.
    count: list[str] = []
    limit_param: str = "limit"
    page_size: int = Field(100, ge=1, le=100_000)
    offset_param: str = "offset"
    page_param: str = "page"
    first_page: int = 1
    cursor_param: str = "since"
    next_cursor: str = "next_cursor"
    has_more: str = "has_more"
    next_url: str = "next"
    #: Full reads of an unstable listing: re-read until one is provably complete, at most this often.
    max_passes: int = Field(5, ge=1, le=50)
    #: Each re-read asks for pages 4 times larger, up to this (0 = page_size): one page is one query,
    #: so a listing that fits in one page cannot move under the read.
    max_page_size: int = Field(0, ge=0, le=1_000_000)

    @field_validator("records", "count", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Changes(_Strict):
    """How changes are found after the first read."""

    #: feed: the cursor listing returns changes since a cursor (with tombstones);
    #: updated_after: a filter parameter on a timestamp; none: every read is a full read,
    #: diffed by content hash against the last one.
    mode: Literal["feed", "updated_after", "none"] = "feed"
    param: str = "updated_after"
    #: The remote field holding the record's change timestamp (for updated_after and `UpdatedAt`).
    field: str = "UpdatedAt"
    #: Seconds re-read before the last cursor (clock skew between us and the CRM).
    overlap_s: float = Field(5.0, ge=0)


class Deletes(_Strict):
    """How a deleted record shows."""

    #: tombstone: the feed lists `{"<id>", "<field>": true}`; missing: gone from a complete full
    #: read; field: a record whose `field` equals `value` counts as deleted.
    mode: Literal["tombstone", "missing", "field"] = "tombstone"
    field: str = "Deleted"
    value: Any = True


class Writes(_Strict):
    """How records are written."""

    update: Literal["PATCH", "PUT", "none"] = "PATCH"
    delete: bool = True
    #: record: the create response holds the record (at `record_path`); id: only its id (at
    #: `id_path`), so it is read back; the same for updates ("nothing": read back).
    create_returns: Literal["record", "id"] = "record"
    update_returns: Literal["record", "nothing"] = "record"
    record_path: str = ""
    id_path: str = "Id"
    #: Header that makes a retried create safe; "" = none (the intent + lookup by natural key does).
    idempotency_header: str = ""
    #: Optimistic concurrency: header carrying the collected `version_field`; "" = none.
    if_match_header: str = ""
    #: Constant remote fields sent with every create, e.g. `{"tax_rate" = "0"}`.
    create_defaults: dict[str, Any] = {}
    #: A remote field the CRM keeps verbatim (dotted path, e.g. `custom_fields.crm_wave_key`) where a
    #: create writes the sync's own key; "" = none. For a CRM that assigns the natural key itself (an
    #: invoice number): a create whose answer was lost is then found again by this key.
    create_key: str = ""


class FieldRule(_Strict):
    """One canonical field's remote counterpart."""

    remote: str = ""
    #: text as is; decimal: money as a string or number, read as a decimal string (written as
    #: the canonical string); number: the same, written as a JSON number; not: a boolean stored
    #: inverted (is_active for IsArchived); const: `value` always on read, never written; join:
    #: the space-separated remote fields in `remote` joined by spaces (read only).
    kind: Literal["text", "decimal", "number", "not", "const", "join"] = "text"
    #: Remote value -> canonical value on read ("*" for any other), and back on write.
    values: dict[str, Any] = {}
    value: Any = None
    #: Never sent (server-assigned, e.g. an invoice number).
    read_only: bool = False
    #: Refers to another canonical resource: its ids get that source's `id_prefix` (a dict of
    #: remote field per source prefix, for a customer split over two resources).
    ref: str = ""
    remote_by_prefix: dict[str, str] = {}
    #: Reading such a reference: the remote path per id prefix, first one present wins.
    read_by_prefix: dict[str, str] = {}
    #: Per id prefix, "remote_field = path": a field the CRM needs next to the reference, read
    #: from the referenced record's GET-one answer (e.g. an invoice's contact from its account).
    companions: dict[str, str] = {}

    @model_validator(mode="after")
    def _remote(self) -> FieldRule:
        if not self.remote and not self.remote_by_prefix and self.kind != "const":
            raise ValueError("remote: required (the remote field name), unless remote_by_prefix or kind = 'const'")
        return self


class Lines(_Strict):
    """Order lines: nested in the record at `path`, with their own field renames."""

    path: str = "Lines"
    fields: dict[str, FieldRule] = {}
    #: Constant remote fields every line carries (e.g. a required `name`), or `"=Field"` to copy one.
    defaults: dict[str, Any] = {}

    @field_validator("fields", mode="before")
    @classmethod
    def _rules(cls, v: Any) -> Any:
        return _field_rules(v)


class Source(_Strict):
    """One remote resource serving (part of) a canonical resource."""

    path: str
    #: Canonical fields this source holds as constants (e.g. `Type = "organization"`): set on read,
    #: and the record goes to the source whose constants match on create.
    when: dict[str, str] = {}
    #: Prefix of this source's ids in the sync (distinguishes two sources of one resource).
    id_prefix: str = ""
    id_field: str = "Id"
    #: The type of this source's ids in request bodies (`int` sends references as numbers).
    id_type: Literal["string", "int"] = "string"
    #: Where the record is in a GET-one answer ("" = the body).
    item_path: str = ""
    #: List rows lack fields (e.g. lines): GET every record after listing it.
    detail: bool = False
    paging: Paging = Paging()
    changes: Changes = Changes()
    deletes: Deletes = Deletes()
    writes: Writes = Writes()
    #: Canonical name -> remote name (dotted path) or a rule table; absent: passed as is.
    fields: dict[str, FieldRule] = {}
    #: Canonical fields this CRM does not have at all (never sent, never read).
    drop: list[str] = []
    lines: Lines | None = None
    version_field: str = "Version"

    @field_validator("fields", mode="before")
    @classmethod
    def _rules(cls, v: Any) -> Any:
        return _field_rules(v)

    @model_validator(mode="after")
    def _consistent(self) -> Source:
        if self.changes.mode == "feed" and self.paging.style != "cursor":
            raise ValueError("changes.mode: 'feed' needs paging.style = 'cursor'")
        if self.deletes.mode == "tombstone" and self.changes.mode != "feed":
            raise ValueError("deletes.mode: 'tombstone' needs changes.mode = 'feed' (use 'missing' or 'field')")
        if self.paging.style == "cursor" and self.changes.mode != "feed":
            raise ValueError("paging.style: 'cursor' is the change feed; set changes.mode = 'feed'")
        return self

    @property
    def identity(self) -> bool:
        """Whether records pass as is (the contract's own shape)."""
        return not self.fields and not self.when and not self.id_prefix and self.lines is None and not self.drop


def _field_rules(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {k: ({"remote": r} if isinstance(r, str) else r) for k, r in v.items()}
    return v


class Profile(_Strict):
    """A whole CRM: where it is, how it authenticates, and its resources."""

    name: str
    description: str = ""
    base_url_env: str = "CRM_BASE_URL"
    token_env: str = "CRM_API_TOKEN"
    auth: Auth = Auth()
    #: Append "/" to every path (Django REST framework wants `/api/accounts/`).
    trailing_slash: bool = False
    #: Remote error bodies: where the message and the field are (dotted paths; `errors` may be a
    #: `{field: [messages]}` object as in Django REST framework).
    error_message: list[str] = ["message", "detail", "error"]
    error_field: str = "field"
    error_fields: str = "errors"
    customers: list[Source]
    products: list[Source]
    orders: list[Source]

    @field_validator("customers", "products", "orders", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, Mapping) else v

    @model_validator(mode="after")
    def _sources(self) -> Profile:
        for resource in CANONICAL_RESOURCES:
            sources = self.sources(resource)
            if not sources:
                raise ValueError(f"{resource}: needs at least one source")
            if len(sources) > 1:
                for i, s in enumerate(sources):
                    if not s.when or not s.id_prefix:
                        raise ValueError(f"{resource}[{i}]: a resource split over several sources needs "
                                         "`when` and `id_prefix` on each")
                prefixes = [s.id_prefix for s in sources]
                if len(set(prefixes)) != len(prefixes):
                    raise ValueError(f"{resource}: id_prefix must differ between sources")
        return self

    def sources(self, resource: str) -> list[Source]:
        """The remote sources of canonical `resource`."""
        if resource not in CANONICAL_RESOURCES:
            raise ValueError(f"resource: unknown CRM resource {resource!r} (expected one of {list(CANONICAL_RESOURCES)})")
        return list(getattr(self, resource))

    @property
    def contract_shaped(self) -> bool:
        """Whether every resource is one cursor feed with tombstones, records as is, PATCH (the contract)."""
        return self.auth.kind in ("bearer", "header") and all(
            len(self.sources(r)) == 1 and self.sources(r)[0].identity and self.sources(r)[0].changes.mode == "feed"
            and self.sources(r)[0].writes.update == "PATCH" and self.sources(r)[0].writes.create_returns == "record"
            and self.sources(r)[0].writes.update_returns == "record" and not self.sources(r)[0].writes.create_key
            for r in CANONICAL_RESOURCES
        )


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "profile"


def parse_profile(data: Mapping[str, Any], *, origin: str = "profile") -> Profile:
    """A validated profile from parsed TOML; `ProfileError` naming the first bad key."""
    try:
        return Profile.model_validate(dict(data))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = _where(tuple(p for p in err["loc"] if p not in ("function-after[_listify(), list[Source]]",)))
        if err["type"] == "extra_forbidden":
            msg = f"unknown key {loc!r}; see docs/custom-crm.md for the keys a profile may have"
        elif err["type"] == "missing":
            msg = f"{loc}: required key is missing"
        else:
            msg = f"{loc}: {err['msg'].removeprefix('Value error, ')}"
        raise ProfileError(f"CRM profile {origin}: {msg}") from None


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped with crm-wave."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path | None = None) -> Profile:
    """A shipped profile by name (default `contract`) or a TOML file by path."""
    spec = str(name_or_path or DEFAULT_PROFILE)
    path = Path(spec)
    if not (spec.endswith(".toml") or "/" in spec):
        path = PROFILE_DIR / f"{spec}.toml"
        if not path.is_file():
            raise ProfileError(f"CRM_PROFILE: {spec!r} is neither a shipped profile ({', '.join(shipped_profiles())}) "
                               "nor a path to a .toml file")
    if not path.is_file():
        raise ProfileError(f"CRM_PROFILE: {str(path)!r} is not a file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"CRM profile {path}: not valid TOML: {exc}") from None
    return parse_profile(data, origin=str(path))


def profile_from_env(environ: Mapping[str, str]) -> Profile:
    """The profile `CRM_PROFILE` names (a shipped name or a path); the contract when unset."""
    return load_profile((environ.get("CRM_PROFILE") or "").strip() or None)
