"""Who wins: the per-field policy of every flow and the first-sync policy, as configuration.

Pure (the standard library's TOML reader; polars only for `field_policy_exprs`). The policy file is
TOML, named by `CRM_WAVE_POLICY` or else `<data dir>/policy.toml`; no file means the defaults:

    first_sync = "review"            # review | crm | wave | newest

    [fields.product]                 # a flow key: customer_organization, customer_person, order, product
    Name = "crm"                     # newest | crm | wave | crm->wave | wave->crm | review

    [fields.customer]                # shorthand for both customer flows
    Currency = "wave"

Field policies (a field not named is `newest`):
- `newest`: changed on one side, that side's value; changed on both, the newer edit (an empty value
  never overwrites a non-empty one), recorded in `conflicts`.
- `crm` / `wave`: that system owns the field: its value wins whenever both records exist; an edit on
  the other side is overwritten by the next sync and recorded in `conflicts`.
- `crm->wave` / `wave->crm`: one-way: the source's edits reach the other side; the other side's
  edits stay where they were made (never copied back, not overwritten until the source changes).
- `review`: a change on both sides waits in the conflict queue (`crm-wave conflicts`) for a person;
  nothing is written for that field until it is decided.

First sync (records linked by merge key whose non-empty values differ and were never agreed):
`review` holds each difference in the conflict queue; `crm`, `wave` or `newest` decides at once
(and records it). A field owned by a system (`crm`, `wave`, one-way) follows its owner instead,
and a field `review` always waits. An empty value is filled in from the other side without asking.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from crm_wave.mapping.flows import FLOWS, flows_for

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "FIELD_POLICIES", "FIRST_SYNC_POLICIES", "Policy", "PolicyError", "POLICY_ENV", "POLICY_FILE",
    "load_policy", "parse_policy", "policy_path", "field_policy_exprs", "describe_policy",
]

FIELD_POLICIES = ("newest", "crm", "wave", "crm->wave", "wave->crm", "review")
FIRST_SYNC_POLICIES = ("review", "crm", "wave", "newest")
DEFAULT_FIELD = "newest"
DEFAULT_FIRST_SYNC = "review"
POLICY_ENV = "CRM_WAVE_POLICY"
POLICY_FILE = "policy.toml"
#: `[fields.customer]` sets both customer flows.
_ALIASES = {"customer": ("customer_organization", "customer_person")}


class PolicyError(ValueError):
    """A policy file that cannot be used; the message is one line naming the flow, field and value."""


@dataclass(frozen=True)
class Policy:
    """Field policies per (flow key, field) that differ from `newest`, and the first-sync policy."""

    fields: Mapping[tuple[str, str], str] = field(default_factory=dict)
    first_sync: str = DEFAULT_FIRST_SYNC
    source: str = "defaults"

    def field(self, flow: str, name: str) -> str:
        """The policy of `name` in flow `flow`."""
        return self.fields.get((flow, name), DEFAULT_FIELD)

    @property
    def key(self) -> str:
        """Changes when any decision changes (the global step rebuilds then)."""
        text = repr((sorted(self.fields.items()), self.first_sync))
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _flow_fields(flow_key: str) -> dict[str, str]:
    """Field name -> mapping direction of a flow."""
    flow = next(f for f in FLOWS if f.key == flow_key)
    return {fm.name: fm.direction for fm in flow.fields}


def parse_policy(data: Mapping[str, object], source: str = "policy") -> Policy:
    """Validate a parsed policy document; raise `PolicyError` (one line) on the first problem."""
    unknown = sorted(set(data) - {"first_sync", "fields"})
    if unknown:
        raise PolicyError(f"{source}: unknown key {unknown[0]!r}; the keys are first_sync and [fields.<flow>]")
    first = data.get("first_sync", DEFAULT_FIRST_SYNC)
    if first not in FIRST_SYNC_POLICIES:
        raise PolicyError(f"{source}: first_sync = {first!r} is not one of {', '.join(FIRST_SYNC_POLICIES)}")
    sections = data.get("fields", {})
    if not isinstance(sections, Mapping):
        raise PolicyError(f"{source}: fields must be tables [fields.<flow>], one per flow")
    flow_keys = [f.key for f in FLOWS]
    out: dict[tuple[str, str], str] = {}
    for name, table in sections.items():
        if name not in flow_keys and name not in _ALIASES:
            raise PolicyError(f"{source}: [fields.{name}]: unknown flow; one of {', '.join([*flow_keys, *_ALIASES])}")
        if not isinstance(table, Mapping):
            raise PolicyError(f"{source}: [fields.{name}] must be a table of field = \"policy\"")
        for flow_key in _ALIASES.get(name, (name,)):
            directions = _flow_fields(flow_key)
            for fld, value in table.items():
                if name in _ALIASES and (flow_key, fld) == ("customer_person", "Name"):
                    continue  # [fields.customer] Name: the organisations' (a person's Name is derived)
                if fld not in directions:
                    raise PolicyError(f"{source}: [fields.{name}] {fld}: no such field in flow {flow_key}; "
                                      f"one of {', '.join(directions)}")
                if value not in FIELD_POLICIES:
                    raise PolicyError(f"{source}: [fields.{name}] {fld} = {value!r} is not one of {', '.join(FIELD_POLICIES)}")
                if directions[fld] == "wave_to_crm" and value != "wave->crm":
                    raise PolicyError(f"{source}: [fields.{name}] {fld} = {value!r}: the field is one-way Wave -> CRM "
                                      "in the mapping; leave it out")
                if (flow_key, fld) == ("customer_person", "Name") and value != DEFAULT_FIELD:
                    raise PolicyError(f"{source}: [fields.{name}] Name = {value!r}: a person's Name is derived from "
                                      "FirstName and LastName; set those instead (or use [fields.customer_organization])")
                if value != DEFAULT_FIELD and directions[fld] == "both":
                    out[(flow_key, fld)] = value
    return Policy(fields=out, first_sync=first, source=source)


def policy_path(data_dir: Path, configured: Path | None = None) -> Path:
    """The policy file: the one `CRM_WAVE_POLICY` names (`configured`, see `AppSettings`), else `<data dir>/policy.toml`."""
    return configured or data_dir / POLICY_FILE


def load_policy(data_dir: Path, configured: Path | None = None) -> Policy:
    """The policy of a data dir, or of the file `CRM_WAVE_POLICY` names (`configured`): the defaults
    when there is no file; `PolicyError` when it is not usable."""
    path = policy_path(data_dir, configured)
    if not path.exists():
        if configured:
            raise PolicyError(f"{POLICY_ENV}={path}: no such file; create it or unset {POLICY_ENV}")
        return Policy()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid TOML ({exc})") from None
    return parse_policy(data, str(path))


def field_policy_exprs(policy: Policy, entity: str, type_col: str = "_type") -> dict[str, str | pl.Expr]:
    """Per two-way field of `entity`, its policy; a String expression (the policy of each row) where
    the customer flows differ: customers belong to the organisation or the person flow by `type_col`."""
    import polars as pl  # here, so that the docs render without polars

    from crm_wave.mapping.canonical import canonical_fields

    flows = flows_for(entity)
    out: dict[str, str | pl.Expr] = {}
    for name, fm in canonical_fields(entity).items():
        if fm.direction != "both":
            continue
        values = {f.key: policy.field(f.key, name) for f in flows}
        if (entity, name) == ("customer", "Name"):
            values["customer_person"] = "derived"  # from FirstName and LastName; never asks
        if entity == "customer" and len(set(values.values())) > 1:
            out[name] = (pl.when(pl.col(type_col) == "person").then(pl.lit(values["customer_person"]))
                         .otherwise(pl.lit(values["customer_organization"])))
        else:
            out[name] = next(iter(values.values()))
    return out


def describe_policy(policy: Policy) -> list[str]:
    """Human-readable lines: the first-sync policy and every field that is not `newest`."""
    lines = [f"policy ({policy.source}): first sync {policy.first_sync}; every other field newest"
             if policy.fields else f"policy ({policy.source}): first sync {policy.first_sync}; every field newest"]
    lines += [f"    {flow}.{name}: {value}" for (flow, name), value in sorted(policy.fields.items())]
    return lines
