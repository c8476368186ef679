"""Testing handlers without building a component: a fake host in memory.

    from plugboard_sdk.testing import FakeHost, event

    def test_assessment():
        host = FakeHost(config={"alert_channel": "C1"})
        host.ai.reply({"risk": "high", "risk_score": 0.9})
        host.http.on("POST", "https://shop.example/admin/api/2025-07/graphql.json",
                     json={"data": {"customer": {"numberOfOrders": "3"}}})
        with host:
            out = OrderRisk().handle(event("orders/create", {"id": 1}))
        assert [e.kind for e in out] == ["orders/assessed", "alerts/slack"]
        assert host.http.requests[0].headers[0] == ("x-shopify-access-token", "{{secret:shop}}")

The same tests run against the built component in the real host: call the connector through
`host.connector(MyConnector)` (`.handle`, `.invoke`, `.on_webhook`), and set
`PLUGBOARD_COMPONENT=my.wasm` (with `PLUGBOARD_BIN`, else `plugboard` on PATH, and
`PLUGBOARD_CACHE_DIR` to compile it once). Each call then runs `plugboard plugin call --json`
with the fake host's grants and config, and its logs and emitted events are recorded the same
way. The real host answers http and ai for real, and keeps kv for one call only, so a test that
needs fixtures, canned replies or stored values runs on the fake host alone (it raises
`ComponentModeError` saying so).

What the fake host does, as the real one would: `kv` keeps values in memory (with their
expiry), `log` and `emit` are recorded, `config` answers from a dict, `http` answers from the
fixtures you add (a request with none is `Denied`, as an unlisted destination is), `ai` answers
the canned replies in order. Secret placeholders are left as written: the plugin never sees a
secret, and a test can check which one it asked for. With `grants`, a capability left out is
`Denied`.
"""

from __future__ import annotations

import base64
import itertools
import json as _json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from . import _host, errors
from .ai import AgentRequest, AgentResponse, ChatRequest, ChatResponse, ToolRound, Usage
from .connector import Connector
from .errors import Denied, Internal, InvalidInput, PluginError
from .http import Request, Response
from .types import Event, NewEvent, WebhookReply, WebhookRequest

_ids = itertools.count(1)


def event(
    kind: str,
    payload: Any = None,
    *,
    source: str = "test",
    id: Optional[str] = None,  # noqa: A002 - the record's field
    attributes: Iterable[tuple[str, str]] = (),
    raw: Optional[bytes] = None,
    content_type: str = "application/json",
) -> Event:
    """An event as the host would deliver it: `payload` as JSON, or `raw` bytes."""
    body = raw if raw is not None else _json.dumps(payload).encode()
    return Event(
        id or f"test-{next(_ids)}",
        source,
        kind,
        int(time.time() * 1000),
        content_type,
        body,
        list(attributes),
    )


def webhook(
    body: Any = None,
    *,
    headers: Iterable[tuple[str, str]] = (),
    method: str = "POST",
    path: str = "/",
    query: str = "",
    raw: Optional[bytes] = None,
) -> WebhookRequest:
    """A verified webhook as the host hands it over: `body` as JSON, or `raw` bytes. Header names
    are made lower case, as the host does."""
    data = raw if raw is not None else _json.dumps(body).encode()
    return WebhookRequest(method, path, query, [(k.lower(), v) for k, v in headers], data)


@dataclass
class LogLine:
    """One line a plugin logged."""

    level: str
    message: str
    fields: dict[str, str]


@dataclass
class Fixture:
    method: str
    url: str
    response: Response
    times_used: int = 0


class FakeHttp:
    """Outbound HTTP answered by fixtures; `requests` records what the plugin sent."""

    def __init__(self) -> None:
        self.fixtures: list[Fixture] = []
        self.requests: list[Request] = []

    def on(
        self,
        method: str,
        url: str,
        *,
        status: int = 200,
        json: Any = None,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> FakeHttp:
        """Answers every `method` request to exactly `url` (query included) with `status` and
        `json` (or raw `body`). The latest fixture for a request wins."""
        hdrs = list(headers)
        if json is not None:
            body = _json.dumps(json).encode()
            hdrs.append(("content-type", "application/json"))
        self.fixtures.append(Fixture(method.upper(), url, Response(status, hdrs, body)))
        return self

    def send(self, request: Request) -> Response:
        self.requests.append(request)
        for fixture in reversed(self.fixtures):
            if fixture.method == request.method.upper() and fixture.url == request.url:
                fixture.times_used += 1
                return fixture.response
        raise Denied(f"no fixture for {request.method} {request.url}: add host.http.on(...) in the test")


class FakeAi:
    """The AI provider, answering canned replies in order; `requests` records what was asked."""

    def __init__(self) -> None:
        self.replies: list[Union[ChatResponse, PluginError]] = []
        self.requests: list[Union[ChatRequest, AgentRequest]] = []

    def reply(self, content: Any, *, model: str = "canned-model", usage: tuple[int, int] = (10, 5)) -> FakeAi:
        """Queues an answer: text, or anything else as JSON."""
        text = content if isinstance(content, str) else _json.dumps(content)
        self.replies.append(ChatResponse(text, model, "stop", Usage(*usage)))
        return self

    def fail(self, error: PluginError) -> FakeAi:
        """Queues a failure (say `RateLimited(1000)`), raised when its turn comes."""
        self.replies.append(error)
        return self

    def _next(self, request: Union[ChatRequest, AgentRequest]) -> ChatResponse:
        self.requests.append(request)
        if not self.replies:
            raise Denied("no canned AI reply left: add host.ai.reply(...) in the test")
        answer = self.replies.pop(0)
        if isinstance(answer, PluginError):
            raise answer
        return answer


class FakeHost:
    """A host in memory for tests. Enter it (`with host:`) around the calls to the connector."""

    def __init__(
        self,
        *,
        config: Optional[dict[str, str]] = None,
        grants: Optional[Iterable[str]] = None,
        kv: Optional[dict[str, Any]] = None,
    ) -> None:
        self.config: dict[str, str] = {k: str(v) for k, v in (config or {}).items()}
        self.grants = None if grants is None else {str(getattr(g, "value", g)) for g in grants}
        self.kv: dict[str, bytes] = {k: _json.dumps(v).encode() for k, v in (kv or {}).items()}
        self.kv_expires_ms: dict[str, int] = {}
        self.logs: list[LogLine] = []
        self.emitted: list[NewEvent] = []
        self.http = FakeHttp()
        self.ai = FakeAi()
        self.now_ms: Optional[int] = None
        # What the connector being called requests (`connector(...)` sets it for its calls).
        self._requested: Optional[set[str]] = None

    def __enter__(self) -> FakeHost:
        _host.push(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _host.pop(self)

    def connector(self, cls: type[Connector]) -> ConnectorRunner:
        """Calls `cls` as the host would: in this process with this fake host answering, or the
        built component in the real host when `PLUGBOARD_COMPONENT` names one."""
        return ConnectorRunner(self, cls, os.environ.get("PLUGBOARD_COMPONENT"))

    def kv_json(self, key: str) -> Any:
        """What the plugin stored under `key`, parsed (None when absent)."""
        expired = key in self.kv_expires_ms and self.kv_expires_ms[key] <= self._now()
        raw = None if expired else self.kv.get(key)
        return None if raw is None else _json.loads(raw)

    def _check(self, capability: str) -> None:
        if self.grants is not None and capability not in self.grants:
            raise Denied(f"capability `{capability}` is not granted")
        if self._requested is not None and capability not in self._requested:
            # As the host does: a capability counts only where it is requested and granted.
            raise Denied(f"capability `{capability}` is not requested in the plugin's metadata")

    def _now(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    # The host calls (`_host.Backend`).
    def kv_get(self, key: str) -> Optional[bytes]:
        self._check("kv")
        if key in self.kv_expires_ms and self.kv_expires_ms[key] <= self._now():
            self.kv.pop(key, None)
            self.kv_expires_ms.pop(key, None)
        return self.kv.get(key)

    def kv_set(self, key: str, value: bytes, ttl_ms: Optional[int]) -> None:
        self._check("kv")
        self.kv[key] = bytes(value)
        self.kv_expires_ms.pop(key, None)
        if ttl_ms is not None:
            self.kv_expires_ms[key] = self._now() + ttl_ms

    def kv_delete(self, key: str) -> bool:
        existed = self.kv_get(key) is not None
        self.kv.pop(key, None)
        self.kv_expires_ms.pop(key, None)
        return existed

    def kv_increment(self, key: str, delta: int) -> int:
        raw = self.kv_get(key)
        try:
            value = 0 if raw is None else int(raw.decode())
        except ValueError:
            raise InvalidInput(f"kv value of `{key}` is not a counter") from None
        value += delta
        if not -(2**63) <= value < 2**63:
            raise InvalidInput(f"kv counter `{key}` would overflow")
        self.kv[key] = str(value).encode()
        return value

    def log_write(self, level: str, message: str, fields: list[tuple[str, str]]) -> None:
        self._check("log")
        self.logs.append(LogLine(level, message, dict(fields)))

    def emit_publish(self, event: NewEvent) -> str:
        self._check("emit")
        self.emitted.append(event)
        return f"emitted-{len(self.emitted)}"

    def http_send(self, request: Request) -> Response:
        self._check("http")
        return self.http.send(request)

    def ai_complete(self, request: ChatRequest) -> ChatResponse:
        self._check("ai")
        return self.ai._next(request)

    def ai_agent(self, request: AgentRequest) -> AgentResponse:
        self._check("ai")
        answer = self.ai._next(request)
        rounds: list[ToolRound] = []
        return AgentResponse(answer.content, answer.model, rounds, answer.usage)

    def config_get(self, key: str) -> Optional[str]:
        self._check("config")
        return self.config.get(key)

    def config_all(self) -> list[tuple[str, str]]:
        self._check("config")
        return sorted(self.config.items())


class ComponentModeError(RuntimeError):
    """A test needs what only the fake host offers (fixtures, canned replies, stored values)."""


_CAPABILITIES = ("http", "kv", "log", "emit", "ai", "config")
_ERRORS = {
    "invalid-input": errors.InvalidInput,
    "unauthorized": errors.Unauthorized,
    "not-found": errors.NotFound,
    "denied": errors.Denied,
    "timeout": errors.Timeout,
    "internal": errors.Internal,
    "quota-exceeded": errors.QuotaExceeded,
}


def _error(e: dict[str, Any]) -> PluginError:
    case = e.get("case")
    if case == "rate-limited":
        return errors.RateLimited(e.get("retry_after_ms"))
    if case == "upstream":
        return errors.Upstream(int(e.get("status", 0)), str(e.get("message", "")))
    cls = _ERRORS.get(str(case))
    # A failure outside the contract (a trap, out of memory): the host answers `internal`.
    return cls(str(e.get("message", ""))) if cls else Internal(f"{case}: {e.get('message', '')}")


def _new_event(e: dict[str, Any]) -> NewEvent:
    payload = base64.b64decode(e["payload_base64"])
    attributes = [(str(k), str(v)) for k, v in e.get("attributes", [])]
    return NewEvent(e["kind"], payload, e["content_type"], e.get("occurred_at_ms"), attributes)


class ConnectorRunner:
    """A connector called as the host calls it (`FakeHost.connector`)."""

    def __init__(self, host: FakeHost, cls: type[Connector], component: Optional[str]) -> None:
        self.host, self.cls, self.component = host, cls, component

    def _in_process(self, call: Any) -> Any:
        requested = {c.value for c in self.cls().metadata().capabilities}
        self.host._requested = requested
        try:
            with self.host:
                return call(self.cls())
        finally:
            self.host._requested = None

    def handle(self, event: Event) -> list[NewEvent]:
        """Delivers `event`; the events it returned."""
        if not self.component:
            return self._in_process(lambda c: c.handle(event))
        args = ["handle", "--kind", event.kind, "--content-type", event.content_type]
        args += ["--payload-base64", base64.b64encode(event.payload).decode(), "--id", event.id]
        args += ["--source", event.source]
        for k, v in event.attributes:
            args += ["--attribute", f"{k}={v}"]
        return [_new_event(e) for e in self._call(args)["returned"]]

    def invoke(self, action: str, input: Any) -> Any:  # noqa: A002 - the contract's name
        """Runs `action` with `input`; its output."""
        if not self.component:
            return self._in_process(lambda c: c.invoke(action, input))
        return self._call(["invoke", action, "--input", _json.dumps(input)])["output"]

    def on_webhook(self, request: WebhookRequest) -> WebhookReply:
        """Hands over a verified webhook; the reply."""
        if not self.component:
            return self._in_process(lambda c: c.on_webhook(request))
        args = ["webhook", "--method", request.method, "--path", request.path, "--query", request.query]
        args += ["--body-base64", base64.b64encode(request.body).decode()]
        for k, v in request.headers:
            args += ["--header", f"{k}={v}"]
        answer = self._call(args)
        reply = answer["output"]
        return WebhookReply(
            reply["status"],
            [(str(k), str(v)) for k, v in reply["headers"]],
            base64.b64decode(reply["body_base64"]),
            [_new_event(e) for e in answer["returned"]],
        )

    def _call(self, args: list[str]) -> dict[str, Any]:
        host = self.host
        missing = [
            what
            for what, present in [
                ("http fixtures", host.http.fixtures),
                ("canned AI replies", host.ai.replies),
                ("kv values", host.kv),
            ]
            if present
        ]
        if missing:
            raise ComponentModeError(
                f"this test sets {', '.join(missing)}, which only the fake host answers: "
                "run it without PLUGBOARD_COMPONENT"
            )
        binary = os.environ.get("PLUGBOARD_BIN") or shutil.which("plugboard")
        if not binary:
            raise ComponentModeError("PLUGBOARD_COMPONENT is set but no plugboard binary: set PLUGBOARD_BIN")
        grants = sorted(host.grants) if host.grants is not None else list(_CAPABILITIES)
        command = [binary, "plugin", "call", str(self.component), "--json"]
        for capability in grants:
            command += ["--grant", capability]
        for k, v in sorted(host.config.items()):
            command += ["--config", f"{k}={v}"]
        done = subprocess.run(command + args, capture_output=True, text=True, check=False)
        try:
            answer = _json.loads(done.stdout)
        except ValueError:
            raise ComponentModeError(f"plugboard plugin call failed: {done.stderr.strip()}") from None
        for line in answer.get("logs", []):
            host.logs.append(LogLine(line["level"], line["message"], {k: v for k, v in line["fields"]}))
        host.emitted.extend(_new_event(e) for e in answer.get("emitted", []))
        if answer.get("error"):
            raise _error(answer["error"])
        return answer


@dataclass
class Replayed:
    """What `replay_fixture` found: whether the build replayed the recording exactly, and the
    report `plugboard replay --json` printed (the recording, the replay, the first divergence)."""

    identical: bool
    report: dict[str, Any]

    def divergence(self) -> Optional[dict[str, Any]]:
        """The first host call the build made that was not the recorded one, if any."""
        found = self.report.get("replayed", {}).get("divergence")
        return found if isinstance(found, dict) else None


def replay_fixture(path: Union[str, os.PathLike[str]], component: Optional[str] = None) -> Replayed:
    """Replays a recording exported with `plugboard replay ID --export DIR` on a built
    component (`component`, else `PLUGBOARD_COMPONENT`) in the real host: the recorded input,
    every host call answered from the recording, clocks and random included. A production
    failure becomes a test: `assert replay_fixture("fixtures/x.json").identical`."""
    wasm = component or os.environ.get("PLUGBOARD_COMPONENT")
    if not wasm:
        raise ComponentModeError("replaying a fixture needs the built component: pass it or set PLUGBOARD_COMPONENT")
    binary = os.environ.get("PLUGBOARD_BIN") or shutil.which("plugboard")
    if not binary:
        raise ComponentModeError("replaying a fixture needs the plugboard binary: set PLUGBOARD_BIN")
    command = [binary, "replay", "--from", os.fspath(path), "--with", str(wasm), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = _json.loads(done.stdout)
    except ValueError:
        raise ComponentModeError(f"plugboard replay failed: {done.stderr.strip()}") from None
    return Replayed(bool(report.get("identical")), report)
