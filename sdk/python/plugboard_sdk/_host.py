"""Who answers the SDK's host calls: the plugboard host through the component's imports, or a
fake host in tests (`plugboard_sdk.testing.FakeHost`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol

if TYPE_CHECKING:
    from .ai import AgentRequest, AgentResponse, ChatRequest, ChatResponse
    from .http import Request, Response
    from .types import NewEvent


class Backend(Protocol):
    """The host calls, in the SDK's own types; each raises a `PluginError` when refused."""

    def kv_get(self, key: str) -> Optional[bytes]: ...
    def kv_set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None: ...
    def kv_delete(self, key: str) -> bool: ...
    def kv_increment(self, key: str, delta: int) -> int: ...
    def log_write(self, level: str, message: str, fields: list[tuple[str, str]]) -> None: ...
    def emit_publish(self, event: NewEvent) -> str: ...
    def http_send(self, request: Request) -> Response: ...
    def ai_complete(self, request: ChatRequest) -> ChatResponse: ...
    def ai_agent(self, request: AgentRequest) -> AgentResponse: ...
    def config_get(self, key: str) -> Optional[str]: ...
    def config_all(self) -> list[tuple[str, str]]: ...


_fakes: list[Any] = []
_component: Optional[Backend] = None


def push(fake: Any) -> None:
    _fakes.append(fake)


def pop(fake: Any) -> None:
    if _fakes and _fakes[-1] is fake:
        _fakes.pop()


def backend() -> Backend:
    """The fake host a test entered, else the component's imports."""
    global _component
    if _fakes:
        return _fakes[-1]
    if _component is None:
        try:
            from . import _wit
        except ImportError:
            raise RuntimeError(
                "plugboard_sdk: no host to call. Inside a component built with componentize-py the "
                "plugboard host answers; in tests, call the handler inside `with FakeHost():` "
                "(plugboard_sdk.testing)."
            ) from None
        _component = _wit.WitBackend()
    return _component
