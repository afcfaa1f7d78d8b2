"""Writes as batched aliased mutations: `send_mutations`, behind `WaveClient.mutate`.

Ops go `batch_size` to a request (`m0: customerCreate(input: $i0) {...}`), up to `max_workers`
requests at once. Per op, a failure is a `MutationResult` with a typed error, never a failed
batch: a request refused as a whole is resent op by op, ops refused by `@rateLimit` are waited
out and sent again, and creates answered NOT_FOUND (nothing was created) are sent again up to
`not_found_retries` times. A failure at transport level stops the remaining batches and raises
`WaveBatchInterrupted` or `WaveBatchOutcomeUnknown` with what was and was not sent.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from crm_wave.systems.http import OutcomeUnknown, TransientError
from crm_wave.systems.wave.documents import mutation_document
from crm_wave.systems.wave.errors import (
    RATE_LIMIT_CODES,
    InputError,
    WaveBatchInterrupted,
    WaveBatchOutcomeUnknown,
    WaveError,
    WaveGraphQLError,
    error_code,
    parse_input_errors,
    result_error,
)
from crm_wave.systems.wave.models import MUTATIONS, Mutation, MutationResult
from crm_wave.systems.wave.transport import GraphQLTransport

__all__ = ["send_mutations"]


def send_mutations(gql: GraphQLTransport, ops: list[Mutation], *, batch_size: int, max_workers: int,
                   not_found_retries: int) -> list[MutationResult]:
    """Send `ops` (Mutation objects, at least one) in batches; one result per op, in order."""
    results = _mutate_once(gql, ops, batch_size, max_workers)
    for _ in range(not_found_retries):
        again = [i for i, (op, res) in enumerate(zip(ops, results))
                 if res.not_found and op.name.endswith("Create")]
        if not again:
            break
        # NOT_FOUND with a null result: nothing was created, so sending it again is safe.
        gql.stats.add("retries", len(again))
        try:
            retried = _mutate_once(gql, [ops[i] for i in again], batch_size, max_workers)
        except WaveBatchInterrupted as exc:
            kept = [r for j, r in enumerate(results) if j not in set(again)]
            raise type(exc)(str(exc), keys=exc.keys, unsent_keys=exc.unsent_keys, results=kept + exc.results,
                            status=exc.status, retry_after=exc.retry_after) from exc
        for i, res in zip(again, retried):
            results[i] = res
    return results


def _mutate_once(gql: GraphQLTransport, ops: list[Mutation], batch_size: int,
                 max_workers: int) -> list[MutationResult]:
    batches = [ops[i : i + batch_size] for i in range(0, len(ops), batch_size)]
    done: dict[int, list[MutationResult]] = {}
    failures: list[tuple[int, TransientError]] = []
    stop = threading.Event()

    def run(index: int) -> None:
        if stop.is_set():
            return
        try:
            done[index] = _send_batch(gql, batches[index])
        except TransientError as exc:
            failures.append((index, exc))
            stop.set()

    if max_workers == 1 or len(batches) == 1:
        for i in range(len(batches)):
            run(i)
    else:
        with ThreadPoolExecutor(max_workers=min(max_workers, len(batches)),
                                thread_name_prefix="wave-mutate") as pool:
            for future in [pool.submit(run, i) for i in range(len(batches))]:
                future.result()

    if failures:
        failures.sort(key=lambda f: f[0])
        failed_idx = {i for i, _ in failures}
        keys = [op.key for i, _ in failures for op in batches[i]]
        unsent = [op.key for i, b in enumerate(batches) if i not in done and i not in failed_idx for op in b]
        results = [r for i in sorted(done) for r in done[i]]
        unknown = [exc for _, exc in failures if isinstance(exc, OutcomeUnknown)]
        first = unknown[0] if unknown else failures[0][1]
        cls = WaveBatchOutcomeUnknown if unknown else WaveBatchInterrupted
        message = f"{first} (batch of {len(keys)} op(s); {len(unsent)} not sent)"
        raise cls(message, keys=keys, unsent_keys=unsent, results=results, status=first.status,
                  retry_after=first.retry_after) from first
    return [r for i in range(len(batches)) for r in done[i]]


def _send_batch(gql: GraphQLTransport, batch: list[Mutation], attempt: int = 0) -> list[MutationResult]:
    names = tuple(op.name for op in batch)
    document = mutation_document(names)
    variables = {f"i{i}": op.input for i, op in enumerate(batch)}
    idempotent = all(op.idempotent for op in batch)
    body = gql.post(document, variables, idempotent=idempotent, operation_name="WaveBatch")
    data = body.get("data")
    errors = body.get("errors") or []
    last_try = attempt + 1 >= gql.policy.max_attempts
    if errors and not isinstance(data, dict):
        # Nothing ran: the request as a whole was refused.
        err = WaveGraphQLError("", errors)
        if "UNAUTHENTICATED" in err.codes:
            gql.raise_for_errors(errors)
        limited = gql.rate_limited(errors)
        if limited and len(limited) == len(errors) and not last_try:
            gql.pause(attempt, limited)
            return _send_batch(gql, batch, attempt + 1)
        if len(batch) > 1:
            return [r for op in batch for r in _send_batch(gql, [op])]
        errs = [InputError(code=error_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                for e in errors]
        return [MutationResult(key=batch[0].key, name=batch[0].name, ok=False, entity=None, errors=errs,
                               error=result_error(list(errors), errs))]
    if not isinstance(data, dict):
        raise WaveError("Wave: mutation response without data")
    by_alias: dict[str, list[dict[str, Any]]] = {}
    for e in errors:
        path = e.get("path") or []
        by_alias.setdefault(str(path[0]) if path else "", []).append(e)
    results: list[MutationResult] = []
    refused: list[int] = []
    for i, op in enumerate(batch):
        alias = f"m{i}"
        out = data.get(alias)
        spec = MUTATIONS[op.name]
        raw = by_alias.get(alias, [])
        tops = [InputError(code=error_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                for e in raw]
        if not isinstance(out, dict):
            raw = raw or by_alias.get("", [])
            if raw and not last_try and all(error_code(e) in RATE_LIMIT_CODES for e in raw):
                refused.append(i)  # refused by @rateLimit: this op ran nothing; send it again
                results.append(None)  # type: ignore[arg-type]
                continue
            errs = [InputError(code=error_code(e), message=e.get("message"), path=[str(p) for p in e.get("path") or []])
                    for e in raw] or [
                InputError(code="NO_RESULT", message="Wave returned no result for this mutation", path=[alias])]
            raw = raw or [{"message": "Wave returned no result for this mutation",
                           "extensions": {"code": "NO_RESULT"}}]
            results.append(MutationResult(key=op.key, name=op.name, ok=False, entity=None, errors=errs,
                                          error=result_error(raw, errs)))
            continue
        entity = out.get(spec.entity_field) if spec.entity_field else None
        ok = bool(out.get("didSucceed"))
        input_errors = parse_input_errors(out.get("inputErrors"))
        results.append(MutationResult(
            key=op.key,
            name=op.name,
            ok=ok,
            entity=entity if isinstance(entity, dict) else None,
            errors=input_errors + tops,
            error=None if ok else result_error(raw, input_errors),
        ))
    if refused:
        gql.pause(attempt, [e for i in refused for e in by_alias.get(f"m{i}", by_alias.get("", []))])
        for i, res in zip(refused, _send_batch(gql, [batch[i] for i in refused], attempt + 1)):
            results[i] = res
    return results
