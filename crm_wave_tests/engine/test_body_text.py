"""A collected body is stored as one JSON text: sorted keys, compact, not escaped, whatever encodes it."""

from __future__ import annotations

import json

from crm_wave.store.datasets import body_text


def _stdlib(body: dict) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def test_a_body_is_stored_as_the_standard_library_writes_it() -> None:
    body = {"b": "Ærlig ø", "a": {"z": 1, "y": [1.5, None, True]}, "note": 'quote " and \\'}
    assert body_text(body) == _stdlib(body)


def test_a_body_orjson_refuses_is_encoded_by_json_the_same_way() -> None:
    body = {"id": "C1", "n": 2 ** 70, "Name": "Åse"}  # beyond 64 bits: orjson refuses it
    assert body_text(body) == _stdlib(body)
    assert body_text({"id": "C1", "Name": "Åse"}) == _stdlib({"id": "C1", "Name": "Åse"})
