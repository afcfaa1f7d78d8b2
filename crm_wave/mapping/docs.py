"""Render `docs/mappings.md` from the mapping definitions in `flows.py`.

The product decision (which fields sync, how records merge, which rows are one-way)
lives in `crm_wave.mapping.flows.FLOWS`; this module turns it into the markdown that
reads like `mappings.md`. Pure: it imports only the flow tables, so it runs without
dagster, httpx or duckdb.

    python -m crm_wave.mapping.docs > docs/mappings.md        # regenerate
    python -m crm_wave.mapping.docs --check docs/mappings.md  # exit 1 with a diff on drift
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence
from pathlib import Path

from crm_wave.mapping.flows import FLOWS, FieldMap, Flow, MergeKey
from crm_wave.mapping.policy import Policy

__all__ = ["render_mappings_markdown", "field_row", "table_header", "merge_sentence", "main"]

REGENERATE = "python -m crm_wave.mapping.docs > docs/mappings.md"

GENERATED_HEADER = (
    "<!-- GENERATED from crm_wave/mapping/flows.py by crm_wave/mapping/docs.py: do not edit by hand. "
    f"Regenerate with `{REGENERATE}`; a test fails when this file drifts. -->"
)

_INTRO = """\
# What is synchronized: Custom CRM <-> Wave

The dataflows of `seed-customcrm-wave.rst`, with the property tables filled in.
Wave property paths are those of Wave's public GraphQL schema (`wave_schema.graphql`
here); the Wave-side choices follow what Sesam Talk syncs into Wave from other
systems (address copied into both `address` and `shippingDetails.address`, `email`
as the customer merge key, `name`/`description`/`unitPrice` for products,
`title`/`memo`/`poNumber`/`currency.code`/items for invoices).

Every flow is two-way: once a CRM entity and a Wave entity are linked, an edit on
either side reaches the other. The tables read left to right for CRM -> Wave and
right to left for Wave -> CRM, except rows marked one-way.

"Wave type" is the GraphQL type of the Wave field (input field in brackets where
the input differs from the output path)."""

_RULES = """\
## Rules for every flow
- Link: once linked (by merge key, or because the sync created the counterpart), the
  pair stays linked even if the merge key later changes on one side.
- Conflicts: per field, against the last value both sides agreed on. A field changed
  on one side only takes that side's value. Changed on both sides: the side with the
  newer modification time wins (`UpdatedAt` vs `modifiedAt`), an empty value never
  overwrites a non-empty one, and the conflict is recorded for analysts. This is the
  default field policy `newest`; "Who wins" below lists the others.
- Deletes are never propagated blindly: a delete on one side is recorded and held
  for approval (products: archive; customers and orders: delete on approval).
- Values are normalised before comparison (trim, case of emails, decimal scale,
  country and currency codes upper-case) so that formatting differences are not edits."""

#: How a merge key's normaliser reads in prose (kinds from `normalize.py`); "" says nothing.
_MERGE_KIND = {
    "text": "",
    "email": "trimmed, case-insensitive",
    "casefold": "trimmed, case-insensitive",
    "code": "trimmed, case-insensitive",
    "date": "by date",
}


def _code(s: str) -> str:
    return f"`{s}`"


def _cell(s: str) -> str:
    """A table cell: pipes escaped, no line breaks."""
    return " ".join(s.replace("|", "\\|").split())


def crm_cell(fm: FieldMap) -> str:
    """The CRM column: the label (or `Name`), with one-way marking and the note when one-way."""
    text = fm.crm_label or _code(fm.name)
    if fm.direction == "wave_to_crm":
        text += f" (one-way, Wave -> CRM; {fm.note})" if fm.note else " (one-way, Wave -> CRM)"
    return text


def wave_cell(fm: FieldMap) -> str:
    """The Wave column: the label, or the read path plus the input paths where they differ."""
    if fm.wave_label:
        text = fm.wave_label
    else:
        text = _code(fm.wave)
        if fm.inputs != (fm.wave,):
            text += " (" + ", ".join(_code(i) for i in fm.inputs) + ")"
    if fm.note and fm.direction != "wave_to_crm":  # one-way rows carry the note in the CRM cell
        text += f" ({fm.note})"
    return text


def type_cell(fm: FieldMap) -> str:
    """The Wave type: the GraphQL type in backticks, any qualifier after it (`String` (ISO 3166-2))."""
    gql, _, rest = fm.wave_type.partition(" ")
    return _code(gql) + (f" {rest}" if rest else "")


def field_row(fm: FieldMap) -> str:
    """One markdown table row for a FieldMap."""
    return "| " + " | ".join(_cell(c) for c in (crm_cell(fm), wave_cell(fm), type_cell(fm))) + " |"


def table_header(flow: Flow) -> str:
    """The table header and separator, e.g. `| CRM Customer | Wave Customer | Wave type |`."""
    return (
        f"| CRM {flow.entity.capitalize()} | Wave {flow.wave_entity.capitalize()} | Wave type |\n"
        "|---|---|---|"
    )


def _merge_term(key: MergeKey) -> str:
    how = _MERGE_KIND.get(key.kind, key.kind)
    return f"{_code(key.crm)} = {_code(key.wave)}" + (f" ({how})" if how else "")


def merge_sentence(flow: Flow) -> str:
    """How pre-existing records are linked, from the flow's merge keys, in order of precedence."""
    if not flow.merge_keys:
        return "Merge: none; records are never merged, only created."
    text = "Merge (link pre-existing records): " + "; else ".join(_merge_term(k) for k in flow.merge_keys) + "."
    if len(flow.merge_keys) == 2:
        text += " Records with neither are never merged, only created."
    elif len(flow.merge_keys) > 2:
        text += " Records with none of these are never merged, only created."
    return text


def render_flow(number: int, flow: Flow) -> str:
    """One numbered section: title, applies-to, merge sentence, table, notes."""
    parts = [
        f"## {number}. {flow.title}",
        f"Applies to {flow.applies_to}.\n{merge_sentence(flow)}",
        table_header(flow) + "\n" + "\n".join(field_row(fm) for fm in flow.fields),
        *flow.notes,
    ]
    return "\n\n".join(parts)


_WHO_WINS = """\
## Who wins
Configured per deployment in a TOML file: `CRM_WAVE_POLICY` names it, else
`<data dir>/policy.toml` (per tenant). It is checked when `crm-wave sync` and
`crm-wave plan` start (a wrong flow, field or value stops them with a one-line error),
and `crm-wave plan` prints it. Without a file every field is `newest` and the first
sync is `review`.

```toml
first_sync = "review"          # review | crm | wave | newest

[fields.product]               # a flow: customer_organization, customer_person, order, product
Name = "crm"                   # [fields.customer] sets both customer flows

[fields.customer_organization]
Currency = "wave"
```

| Field policy | Edit in the CRM only | Edit in Wave only | Edits on both sides |
|---|---|---|---|
| `newest` (default) | reaches Wave | reaches the CRM | the newer edit wins (an empty value never overwrites a non-empty one); recorded |
| `crm` | reaches Wave | overwritten by the CRM's value; recorded | the CRM's value wins; recorded |
| `wave` | overwritten by Wave's value; recorded | reaches the CRM | Wave's value wins; recorded |
| `crm->wave` | reaches Wave | stays in Wave only (not copied back, not overwritten) | the CRM's value wins; recorded |
| `wave->crm` | stays in the CRM only (not copied back, not overwritten) | reaches the CRM | Wave's value wins; recorded |
| `review` | reaches Wave | reaches the CRM | waits in the conflict queue; nothing is written for the field until decided |

First sync: when a CRM and a Wave record are linked by merge key and a field holds two
different non-empty values that were never agreed, `first_sync = "review"` (the default)
queues each difference and writes nothing for it; `crm`, `wave` or `newest` decides at
once and records it (reason "differed when first linked"). A field whose policy names an
owner (`crm`, `wave`, `crm->wave`, `wave->crm`) follows its owner instead, and a `review`
field always waits. An empty side is filled in from the other without asking. A person's
`Name` is derived from `FirstName` and `LastName` and takes no policy; the one-way rows of
the mapping (Wave -> CRM) take none either.

The conflict queue: `crm-wave conflicts` lists the open items (entity, field, both values,
the base, when each side changed); `crm-wave conflicts resolve ID... --take crm|wave|newest`
or `--value TEXT` (or `--all`) decides; the next sync writes the decided value to the side(s)
that differ, and the item is kept with who decided what, when (`crm-wave conflicts history`,
SQL views `open_conflicts` and `conflict_decisions`). An item is superseded when either side
changes the field again before the decision is applied; the new difference is queued afresh.
Records and fields that wait never hold up the others."""


def render_policy(policy: Policy) -> str:
    """The configured field policies as a table (for `--policy`), or a sentence when all are `newest`."""
    head = f"First sync: `{policy.first_sync}`."
    if not policy.fields:
        return head + " Every field: `newest`."
    rows = "\n".join(f"| {flow} | `{name}` | `{value}` |" for (flow, name), value in sorted(policy.fields.items()))
    return f"{head} Every field not listed: `newest`.\n\n| Flow | Field | Policy |\n|---|---|---|\n{rows}"


def render_mappings_markdown(flows: Sequence[Flow] = FLOWS, policy: Policy | None = None) -> str:
    """The whole `docs/mappings.md` for `flows` (default: the project's FLOWS); `policy`: also the
    configured policy of one deployment."""
    sections = [GENERATED_HEADER, _INTRO]
    sections += [render_flow(i, flow) for i, flow in enumerate(flows, start=1)]
    sections.append(_RULES)
    sections.append(_WHO_WINS)
    if policy is not None:
        sections.append(f"### This deployment's policy ({policy.source})\n\n{render_policy(policy)}")
    return "\n\n".join(sections) + "\n"


def check(path: Path, flows: Sequence[Flow] = FLOWS) -> tuple[bool, str]:
    """(True, "") when `path` equals the rendered docs; else (False, a unified diff)."""
    expected = render_mappings_markdown(flows)
    try:
        actual = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        actual = ""
    if actual == expected:
        return True, ""
    diff = difflib.unified_diff(
        actual.splitlines(keepends=True),
        expected.splitlines(keepends=True),
        fromfile=f"{path} (committed)",
        tofile=f"{path} (rendered from flows.py)",
    )
    return False, "".join(diff)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m crm_wave.mapping.docs",
        description="Print docs/mappings.md rendered from crm_wave/mapping/flows.py, or check a file against it.",
    )
    parser.add_argument("--check", metavar="PATH", type=Path, help="exit 1 with a diff when PATH differs")
    parser.add_argument("--policy", metavar="TOML", type=Path, help="also render this deployment's policy file")
    args = parser.parse_args(argv)
    if args.check is not None:
        ok, diff = check(args.check)
        if not ok:
            sys.stdout.write(diff)
            sys.stderr.write(f"{args.check} is out of date; regenerate with: {REGENERATE}\n")
            return 1
        return 0
    policy = None
    if args.policy is not None:
        from crm_wave.mapping.policy import PolicyError, load_policy

        try:
            policy = load_policy(args.policy.parent, args.policy)
        except PolicyError as exc:
            sys.stderr.write(f"{exc}\n")
            return 2
    sys.stdout.write(render_mappings_markdown(policy=policy))
    return 0


if __name__ == "__main__":
    sys.exit(main())
