"""The errors of the Wave client, and how Wave's GraphQL errors map onto them.

All are `crm_wave.systems.http.ApiError`s:

- `WaveError`: Wave refused or could not answer (bad configuration, bad response);
  - `WaveGraphQLError`: top-level GraphQL `errors` (`errors`, `codes`, `support_ids`);
    - `WaveAuthError`: the token was refused (`UNAUTHENTICATED`, HTTP 401/403);
    - `WaveNotFound`: an id Wave does not know (`NOT_FOUND`; a deleted or stale record);
    - `WaveRateLimited`: still rate limited after every wait (also a `TransientError`);
  - `WaveRejected`: a mutation's business-rule failure (`inputErrors`);
- `WaveBatchInterrupted` (a `TransientError`): `mutate` stopped part-way at transport
  level, with `keys`, `unsent_keys` and `results`; `WaveBatchOutcomeUnknown` is also an
  `OutcomeUnknown` (some writes may have happened).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crm_wave.systems.http import ApiError, OutcomeUnknown, TransientError

if TYPE_CHECKING:
    from crm_wave.systems.wave.models import MutationResult

__all__ = [
    "RATE_LIMIT_CODES",
    "InputError",
    "WaveAuthError",
    "WaveBatchInterrupted",
    "WaveBatchOutcomeUnknown",
    "WaveError",
    "WaveGraphQLError",
    "WaveNotFound",
    "WaveRateLimited",
    "WaveRejected",
    "error_class",
    "error_code",
    "parse_input_errors",
    "result_error",
]


@dataclass(frozen=True)
class InputError:
    """One of Wave's `inputErrors` (a business-rule failure of one mutation)."""

    code: str | None
    message: str | None
    path: list[str] = field(default_factory=list)


class WaveError(ApiError):
    """Wave refused or could not answer a request (bad configuration, bad response...)."""


class WaveGraphQLError(WaveError):
    """Wave answered with top-level GraphQL `errors`.

    `errors` holds the error objects as sent; `codes` their `extensions.code` values
    (for example `GRAPHQL_VALIDATION_FAILED`), in order, without duplicates.
    """

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = ()) -> None:
        super().__init__(message)
        self.errors: list[dict[str, Any]] = [dict(e) for e in errors]
        codes: list[str] = []
        for e in self.errors:
            code = (e.get("extensions") or {}).get("code")
            if isinstance(code, str) and code not in codes:
                codes.append(code)
        self.codes: list[str] = codes


    @property
    def support_ids(self) -> list[str]:
        """The support `id` of each error (give them to Wave Support when asking about one)."""
        return [str(i) for e in self.errors if (i := (e.get("extensions") or {}).get("id"))]


class WaveAuthError(WaveGraphQLError):
    """The token was refused (`UNAUTHENTICATED`, HTTP 401/403)."""


class WaveNotFound(WaveGraphQLError):
    """Wave does not know an id (`NOT_FOUND`): the record was deleted, or the id is stale."""


class WaveRateLimited(WaveGraphQLError, TransientError):
    """Wave kept answering "rate limited" as a GraphQL error after every wait; nothing was done."""

    def __init__(self, message: str, errors: Sequence[Mapping[str, Any]] = (), *,
                 retry_after: float | None = None) -> None:
        WaveGraphQLError.__init__(self, message, errors)
        self.status = 200
        self.retry_after = retry_after


class WaveRejected(WaveError):
    """A mutation's business-rule failure: Wave's `inputErrors` (`didSucceed: false`)."""

    def __init__(self, message: str, input_errors: Sequence[InputError] = ()) -> None:
        super().__init__(message)
        self.input_errors = list(input_errors)


class WaveBatchInterrupted(TransientError):
    """`mutate` stopped part-way at transport level: nothing more was sent after the failure.

    `keys` are the ops of the failed batches, `unsent_keys` the ops never sent, and
    `results` the results of the batches that did complete."""

    def __init__(self, message: str, *, keys: list[str], unsent_keys: list[str], results: list[MutationResult],
                 status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.keys = keys
        self.unsent_keys = unsent_keys
        self.results = results


class WaveBatchOutcomeUnknown(WaveBatchInterrupted, OutcomeUnknown):
    """`mutate` stopped part-way and some writes of the failed batches may have happened:
    look them up before sending them again."""


#: GraphQL error codes that mean "rate limited: wait and send again" (Wave's `@rateLimit`).
RATE_LIMIT_CODES = frozenset({"RATE_LIMITED", "RATE_LIMIT_EXCEEDED", "TOO_MANY_REQUESTS", "THROTTLED"})


def error_code(error: Mapping[str, Any]) -> str | None:
    """The `extensions.code` of one GraphQL error object, if it has one."""
    code = (error.get("extensions") or {}).get("code")
    return code if isinstance(code, str) else None


def error_class(codes: Sequence[str]) -> type[WaveGraphQLError]:
    """The typed error for a response's GraphQL error codes."""
    if "UNAUTHENTICATED" in codes:
        return WaveAuthError
    if codes and all(c in RATE_LIMIT_CODES for c in codes):
        return WaveRateLimited
    if codes and all(c == "NOT_FOUND" for c in codes):
        return WaveNotFound
    return WaveGraphQLError


def parse_input_errors(raw: Any) -> list[InputError]:
    """Wave's `inputErrors` list as `InputError`s."""
    out: list[InputError] = []
    for e in raw or []:
        path = e.get("path") or []
        out.append(InputError(code=e.get("code"), message=e.get("message"), path=[str(p) for p in path]))
    return out


def result_error(errors: list[dict[str, Any]], input_errors: list[InputError]) -> WaveError:
    """The typed error of one failed op: its top-level errors, else its input errors."""
    if errors:
        codes = [c for e in errors if (c := error_code(e))]
        text = "; ".join(str(e.get("message")) for e in errors[:3])
        cls = error_class(codes)
        if cls is WaveRateLimited:
            after = [(e.get("extensions") or {}).get("retryAfter") for e in errors]
            return WaveRateLimited(text, errors, retry_after=max((a for a in after if isinstance(a, (int, float))),
                                                                 default=None))
        return cls(text, errors)
    text = "; ".join(f"{'.'.join(e.path) or 'input'}: {e.message}" for e in input_errors[:3]) or "refused"
    return WaveRejected(text, input_errors)
