"""The configuration values the operator set for this instance.

    channel = config.require("alert_channel")
    threshold = float(config.get("risk_threshold") or 0.7)
"""

from __future__ import annotations

from typing import Optional, overload

from ._host import backend
from .errors import InvalidInput


@overload
def get(key: str) -> Optional[str]: ...
@overload
def get(key: str, default: str) -> str: ...
def get(key: str, default: Optional[str] = None) -> Optional[str]:
    """The value of `key`, or `default` when it is not set."""
    value = backend().config_get(key)
    return default if value is None else value


def require(key: str) -> str:
    """The value of `key`; `InvalidInput` naming the key when it is not set."""
    value = backend().config_get(key)
    if value is None:
        raise InvalidInput(f"config value `{key}` is not set")
    return value


def all() -> list[tuple[str, str]]:  # noqa: A001 - mirrors the contract's get-all
    """Every key and value, sorted by key."""
    return backend().config_all()
