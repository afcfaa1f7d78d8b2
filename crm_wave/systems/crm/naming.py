"""How a particular CRM names things, so one that differs from the contract only in naming plugs in by configuration.

The sync always works with the contract's canonical PascalCase names (`Email`,
`Lines`, `Quantity`, ...). A `CrmNaming` maps those to the remote API's names —
resource paths, field names (at any depth, e.g. inside order `Lines`), the auth
header and scheme, the listing envelope and its query parameters — and translates
bodies both ways. Load it from JSON or TOML (e.g. the `CRM_NAMING` environment
variable):

    {"paths": {"customers": "clients"},
     "fields": {"Email": "email_address", "Lines": "rows"},
     "auth_header": "X-Api-Key", "auth_scheme": ""}
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

__all__ = ["CrmNaming", "DEFAULT_PATHS"]

DEFAULT_PATHS: Mapping[str, str] = MappingProxyType(
    {"customers": "customers", "products": "products", "orders": "orders"}
)


@dataclass(frozen=True, kw_only=True)
class CrmNaming:
    """Names of one CRM's API; the defaults are the contract's own."""

    paths: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PATHS))
    fields: Mapping[str, str] = field(default_factory=dict)
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    items_key: str = "items"
    next_cursor_key: str = "next_cursor"
    has_more_key: str = "has_more"
    since_param: str = "since"
    limit_param: str = "limit"
    idempotency_header: str = "Idempotency-Key"
    if_match_header: str = "If-Match"

    def __post_init__(self) -> None:
        paths = {**DEFAULT_PATHS, **dict(self.paths)}
        unknown = sorted(set(paths) - set(DEFAULT_PATHS))
        if unknown:
            raise ValueError(f"paths: unknown resource {unknown[0]!r} (expected one of {sorted(DEFAULT_PATHS)})")
        for name, value in (*paths.items(), *dict(self.fields).items()):
            if not isinstance(name, str) or not isinstance(value, str) or not value.strip():
                raise ValueError(f"naming: {name!r} must map to a non-empty string, got {value!r}")
        remote = list(dict(self.fields).values())
        duplicates = sorted({r for r in remote if remote.count(r) > 1})
        if duplicates:
            raise ValueError(f"fields: remote name {duplicates[0]!r} is used for more than one field")
        for f in fields(self):
            if f.name not in ("paths", "fields") and not isinstance(getattr(self, f.name), str):
                raise ValueError(f"{f.name}: expected a string")
        if not self.auth_header.strip():
            raise ValueError("auth_header: must not be empty")
        object.__setattr__(self, "paths", MappingProxyType(paths))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))
        object.__setattr__(self, "_to_remote", dict(self.fields))
        object.__setattr__(self, "_to_canonical", {v: k for k, v in self.fields.items()})

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CrmNaming:
        """From a parsed JSON/TOML object; ValueError naming an unknown key."""
        if not isinstance(data, Mapping):
            raise ValueError("naming: expected an object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"naming: unknown key {unknown[0]!r} (known: {', '.join(sorted(known))})")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> CrmNaming:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"naming: not valid JSON: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def from_toml(cls, text: str) -> CrmNaming:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"naming: not valid TOML: {exc}") from None
        return cls.from_mapping(data)

    @classmethod
    def loads(cls, text: str) -> CrmNaming:
        """From JSON (text starting with `{`) or else TOML."""
        return cls.from_json(text) if text.lstrip().startswith("{") else cls.from_toml(text)

    # ------------------------------------------------------------------ translation

    def path(self, resource: str) -> str:
        """The remote path segment of `resource` ("customers", "products" or "orders")."""
        try:
            return self.paths[resource]
        except KeyError:
            raise ValueError(f"resource: unknown CRM resource {resource!r} (expected one of {sorted(self.paths)})") from None

    def to_remote(self, value: Any) -> Any:
        """Canonical -> remote names, recursively (objects inside lists too)."""
        return _rename(value, self._to_remote)  # type: ignore[attr-defined]

    def to_canonical(self, value: Any) -> Any:
        """Remote -> canonical names, recursively."""
        return _rename(value, self._to_canonical)  # type: ignore[attr-defined]

    def field_to_canonical(self, name: str | None) -> str | None:
        """A remote field name from an error response, in canonical terms (`rows[0].qty` -> `Lines[0].Quantity`)."""
        if name is None:
            return None
        table: dict[str, str] = self._to_canonical  # type: ignore[attr-defined]
        if not table:
            return name
        out = []
        for part in name.split("."):
            base, bracket, rest = part.partition("[")
            out.append(table.get(base, base) + bracket + rest)
        return ".".join(out)

    def auth_value(self, token: str) -> str:
        return f"{self.auth_scheme} {token}" if self.auth_scheme else token


def _rename(value: Any, table: Mapping[str, str]) -> Any:
    if not table:
        return value
    if isinstance(value, dict):
        return {table.get(k, k): _rename(v, table) for k, v in value.items()}
    if isinstance(value, list):
        return [_rename(v, table) for v in value]
    return value
