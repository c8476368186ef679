"""The instance's own key-value namespace, with JSON values.

    kv.set("ticket:42", {"team": "billing"}, ttl_seconds=3600)
    ticket = kv.get("ticket:42")          # None when absent or expired
    seen = kv.increment("tickets-seen")
"""

from __future__ import annotations

import json
from typing import Any, Optional

from ._host import backend
from .errors import InvalidInput
from .types import _to_json


def get(key: str) -> Any:
    """The JSON value under `key`; None when absent or expired."""
    raw = backend().kv_get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as e:
        raise InvalidInput(f"kv value of `{key}` is not JSON: {e}") from None


def set(key: str, value: Any, ttl_seconds: Optional[float] = None) -> None:  # noqa: A001 - the contract's name
    """Stores `value` as JSON under `key`, expiring after `ttl_seconds` when given."""
    raw = _to_json(value, f"kv value of `{key}`")
    set_bytes(key, raw, ttl_seconds)


def get_bytes(key: str) -> Optional[bytes]:
    """The raw bytes under `key`."""
    return backend().kv_get(key)


def set_bytes(key: str, value: bytes, ttl_seconds: Optional[float] = None) -> None:
    """Stores raw bytes."""
    ttl_ms = None if ttl_seconds is None else max(0, int(ttl_seconds * 1000))
    backend().kv_set(key, bytes(value), ttl_ms)


def delete(key: str) -> bool:
    """Removes `key`; answers whether it existed."""
    return backend().kv_delete(key)


def increment(key: str, delta: int = 1) -> int:
    """Adds `delta` to the counter under `key` (absent counts as 0); answers the new value."""
    return backend().kv_increment(key, delta)
