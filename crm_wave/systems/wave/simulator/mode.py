"""How harsh the simulator is (`create_app(strict=...)`) and the errors shared by resolvers.

Default mode is faithful where Wave documents its behaviour; strict mode (`crm-wave sim
wave --strict`) also plays what Wave may do but does not document: locked invoices,
payments that do not move `modifiedAt`, one-second `modifiedAt`, rate limits on by
default and creates that spuriously answer NOT_FOUND. docs/wave-behaviour.md lists each
behaviour with its source.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo

__all__ = ["SimMode", "LOCKED_STATUSES", "not_found", "mode_of"]

#: Statuses in which strict mode refuses `invoiceDelete` and a patch of items, customer or currency.
LOCKED_STATUSES = frozenset({"SENT", "VIEWED", "PAID", "PARTIAL", "OVERDUE", "OVERPAID"})


@dataclass
class SimMode:
    """The simulator's mode, shared by every request of one app."""

    strict: bool = False
    #: Returns True when this create should spuriously answer NOT_FOUND (set by `create_app`).
    spurious_not_found: Callable[[], bool] = field(default=lambda: False)


def mode_of(info: GraphQLResolveInfo) -> SimMode:
    """The mode of the app serving this request."""
    return info.context.get("mode") or SimMode()


def not_found(kind: str, value: Any) -> GraphQLError:
    """Wave's top-level NOT_FOUND error ("Business 'BAD_ID' could not be found.", Wave's Errors page)."""
    return GraphQLError(f"{kind} '{value}' could not be found.", extensions={"code": "NOT_FOUND"})
