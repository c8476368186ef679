"""The host calls through the component's imports (the bindings componentize-py generates from
`wit/`). Imported only inside a component: elsewhere `wit_world` does not exist."""

from __future__ import annotations

from typing import Any, Callable, Optional, TypeVar

from componentize_py_types import Err
from wit_world.imports import ai as raw_ai
from wit_world.imports import ai_tools as raw_ai_tools
from wit_world.imports import ai_types, types
from wit_world.imports import config as raw_config
from wit_world.imports import emit as raw_emit
from wit_world.imports import http as raw_http
from wit_world.imports import kv as raw_kv
from wit_world.imports import log as raw_log

from . import ai, errors, http
from .types import NewEvent, _to_json

T = TypeVar("T")

_LEVELS = {
    "trace": raw_log.Level.TRACE,
    "debug": raw_log.Level.DEBUG,
    "info": raw_log.Level.INFO,
    "warn": raw_log.Level.WARN,
    "error": raw_log.Level.ERROR,
}
_ROLES = {"system": ai_types.Role.SYSTEM, "user": ai_types.Role.USER, "assistant": ai_types.Role.ASSISTANT}
_FINISH = {
    ai_types.FinishReason.STOP: "stop",
    ai_types.FinishReason.LENGTH: "length",
    ai_types.FinishReason.CONTENT_FILTER: "content-filter",
    ai_types.FinishReason.TOOL_CALLS: "tool-calls",
    ai_types.FinishReason.OTHER: "other",
}


def _call(f: Callable[..., T], *args: Any) -> T:
    """Calls the import `f`; its `Err` becomes the SDK's exception."""
    try:
        return f(*args)
    except Err as e:
        raise errors.from_wit(e.value) from None


def fields(value: Any, what: str) -> list[tuple[str, str]]:
    """`value` as the contract's list of (name, value) text pairs."""
    try:
        pairs = [(k, v) for k, v in value]
    except (TypeError, ValueError):
        raise errors.Internal(f"{what} must be (name, value) pairs") from None
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise errors.Internal(f"{what} must be pairs of strings")
    return pairs


def payload(value: Any, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise errors.Internal(f"{what} must be bytes, not {type(value).__name__}")
    return bytes(value)


def new_event_to_wit(e: NewEvent) -> Any:
    """The contract's record for `e`, checked: a wrong type is a typed `internal` error here,
    not a trap when componentize-py lowers it."""
    if not isinstance(e, NewEvent):
        raise errors.Internal(f"expected a NewEvent, got {type(e).__name__}")
    if not isinstance(e.kind, str) or not isinstance(e.content_type, str):
        raise errors.Internal("an event's kind and content type must be strings")
    at = e.occurred_at_ms
    if at is not None and (isinstance(at, bool) or not isinstance(at, int) or not 0 <= at <= errors.U64_MAX):
        raise errors.Internal(f"occurred_at_ms must be a whole number of ms, not {at!r}")
    attributes = fields(e.attributes, f"the attributes of {e.kind}")
    return types.NewEvent(e.kind, at, e.content_type, payload(e.payload, f"the payload of {e.kind}"), attributes)


def _messages(messages: list[ai.Message]) -> list[Any]:
    out = []
    for m in messages:
        if m.role not in _ROLES:
            raise errors.InvalidInput(f"message role `{m.role}` is not system, user or assistant")
        out.append(ai_types.Message(_ROLES[m.role], m.content))
    return out


def _format(request: ai.ChatRequest) -> Any:
    if request.response_format == "json_object":
        return ai_types.ResponseFormat_JsonObject()
    if request.response_format == "json_schema":
        # As serde_json writes it: an AI cache key and a replay compare requests byte for byte.
        return ai_types.ResponseFormat_JsonSchema(_to_json(request.schema or {}, "the JSON schema").decode())
    return ai_types.ResponseFormat_Text()


class WitBackend:
    def kv_get(self, key: str) -> Optional[bytes]:
        return _call(raw_kv.get, key)

    def kv_set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None:
        _call(raw_kv.set, key, value, ttl_ms)

    def kv_delete(self, key: str) -> bool:
        return _call(raw_kv.delete, key)

    def kv_increment(self, key: str, delta: int) -> int:
        return _call(raw_kv.increment, key, delta)

    def log_write(self, level: str, message: str, fields: list[tuple[str, str]]) -> None:
        _call(raw_log.write, _LEVELS[level], message, fields)

    def emit_publish(self, event: NewEvent) -> str:
        return _call(raw_emit.publish, new_event_to_wit(event))

    def http_send(self, request: http.Request) -> http.Response:
        raw = types.HttpRequest(request.method, request.url, list(request.headers), request.body_bytes, request.retries)
        r = _call(raw_http.send, raw)
        return http.Response(r.status, list(r.headers), bytes(r.body))

    def ai_complete(self, request: ai.ChatRequest) -> ai.ChatResponse:
        raw = ai_types.ChatRequest(
            request.model,
            _messages(request.messages),
            request.temperature,
            request.max_tokens,
            _format(request),
            list(request.stop),
        )
        r = _call(raw_ai.complete, raw)
        usage = ai.Usage(r.usage.prompt_tokens, r.usage.completion_tokens)
        return ai.ChatResponse(r.content, r.model, _FINISH.get(r.finish_reason, "other"), usage, r.request_id)

    def ai_agent(self, request: ai.AgentRequest) -> ai.AgentResponse:
        raw = raw_ai_tools.AgentRequest(
            request.model,
            _messages(request.messages),
            list(request.tools),
            request.max_rounds,
            request.temperature,
            request.max_tokens,
        )
        r = _call(raw_ai_tools.run, raw)
        rounds = [
            ai.ToolRound(ai.ToolCall(x.call.id, x.call.name, x.call.arguments), x.output, x.is_error) for x in r.rounds
        ]
        usage = ai.Usage(r.usage.prompt_tokens, r.usage.completion_tokens)
        return ai.AgentResponse(r.content, r.model, rounds, usage)

    def config_get(self, key: str) -> Optional[str]:
        return _call(raw_config.get, key)

    def config_all(self) -> list[tuple[str, str]]:
        return list(_call(raw_config.get_all))
