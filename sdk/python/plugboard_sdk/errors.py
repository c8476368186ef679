"""The contract's errors, as exceptions.

Raise one from a handler and the host gets the matching case of the WIT `error` variant; a host
call that fails raises one. Whether the host retries depends on the case: `RateLimited`,
`Timeout` and `Upstream` are retried, the others are not (a dead letter, inspect and replay it).
Any other exception a handler lets escape reaches the host as `Internal`, with its type and
message.
"""

from __future__ import annotations

from typing import Any, Optional


class PluginError(Exception):
    """A failure the contract names. Subclasses are the cases of the WIT `error` variant."""

    case = "internal"
    retryable = False

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash((type(self), self.message))


class InvalidInput(PluginError):
    """The input cannot be handled, now or later (bad JSON, a missing field)."""

    case = "invalid-input"


class Unauthorized(PluginError):
    """Credentials were refused."""

    case = "unauthorized"


class NotFound(PluginError):
    """What was asked for does not exist (an unknown action, a missing record)."""

    case = "not-found"


class Denied(PluginError):
    """The operator did not grant what was asked (a capability, a destination, a secret)."""

    case = "denied"


class RateLimited(PluginError):
    """Too many requests; `retry_after_ms` is how long to wait, when known. Retried."""

    case = "rate-limited"
    retryable = True

    def __init__(self, retry_after_ms: Optional[int] = None) -> None:
        wait = "" if retry_after_ms is None else f" (retry after {retry_after_ms} ms)"
        super().__init__("rate limited" + wait)
        self.retry_after_ms = retry_after_ms


class Timeout(PluginError):
    """Something took too long. Retried."""

    case = "timeout"
    retryable = True


class Upstream(PluginError):
    """The service behind answered with a failure (`status`, what it said). Retried."""

    case = "upstream"
    retryable = True

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.upstream_message = message


class Internal(PluginError):
    """A bug or an unexpected state in the plugin."""

    case = "internal"


class QuotaExceeded(PluginError):
    """A budget the operator set is spent (AI tokens per day). Not retried."""

    case = "quota-exceeded"


_BY_WIT_CLASS = {
    "Error_InvalidInput": InvalidInput,
    "Error_Unauthorized": Unauthorized,
    "Error_NotFound": NotFound,
    "Error_Denied": Denied,
    "Error_Timeout": Timeout,
    "Error_Internal": Internal,
    "Error_QuotaExceeded": QuotaExceeded,
}


def from_wit(value: Any) -> PluginError:
    """The exception for a WIT `error` value as componentize-py generates it."""
    name = type(value).__name__
    if name == "Error_RateLimited":
        return RateLimited(value.value)
    if name == "Error_Upstream":
        return Upstream(value.value.status, value.value.message)
    cls = _BY_WIT_CLASS.get(name, Internal)
    return cls(str(value.value))


U64_MAX = 2**64 - 1


def clamp_u64(value: Any) -> Optional[int]:
    """`value` as the contract's u64: whole, at least 0, at most 2^64-1 (None stays None)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    if number != number:  # NaN
        return 0
    if number >= U64_MAX:
        return U64_MAX
    return max(0, int(value) if isinstance(value, int) else int(number))


def to_wit(error: PluginError, types: Any) -> Any:
    """The WIT `error` value for `error`, built from the generated `types` module. Values the
    contract cannot carry are brought into range (a wait past u64, a status past u16)."""
    if isinstance(error, RateLimited):
        return types.Error_RateLimited(clamp_u64(error.retry_after_ms))
    if isinstance(error, Upstream):
        status = error.status if isinstance(error.status, int) and 0 <= error.status <= 65535 else 0
        return types.Error_Upstream(types.UpstreamFailure(status, str(error.upstream_message)))
    for wit_name, cls in _BY_WIT_CLASS.items():
        if isinstance(error, cls):
            return getattr(types, wit_name)(str(error.message))
    return types.Error_Internal(str(error.message))
