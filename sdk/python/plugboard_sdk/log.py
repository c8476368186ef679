"""Structured logs into the host's log, tagged with the instance and the event.

    log.info("order assessed", order=1001, risk=0.12)

A denied `log` capability is no reason to fail a handler, so `info`, `warn`, `error` and `debug`
ignore it; `write` raises it.
"""

from __future__ import annotations

from typing import Any

from ._host import backend
from .errors import Denied

LEVELS = ("trace", "debug", "info", "warn", "error")


def write(level: str, message: str, **fields: Any) -> None:
    """Writes one line at `level` (trace, debug, info, warn, error) with `fields` as text."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    backend().log_write(level, str(message), [(k, str(v)) for k, v in fields.items()])


def _quiet(level: str, message: str, fields: dict[str, Any]) -> None:
    try:
        write(level, message, **fields)
    except Denied:
        pass


def debug(message: str, **fields: Any) -> None:
    """Logs at `debug`."""
    _quiet("debug", message, fields)


def info(message: str, **fields: Any) -> None:
    """Logs at `info`."""
    _quiet("info", message, fields)


def warn(message: str, **fields: Any) -> None:
    """Logs at `warn`."""
    _quiet("warn", message, fields)


def error(message: str, **fields: Any) -> None:
    """Logs at `error`."""
    _quiet("error", message, fields)
