"""The SDK against its fake host: what a plugin author relies on in tests and in production."""

from types import SimpleNamespace

import pytest

from plugboard_sdk import (
    Capability,
    Connector,
    Denied,
    Hints,
    Internal,
    InvalidInput,
    Metadata,
    NewEvent,
    NotFound,
    RateLimited,
    Unauthorized,
    Upstream,
    ai,
    config,
    emit,
    export,
    http,
    kv,
    log,
)
from plugboard_sdk import errors
from plugboard_sdk.testing import FakeHost, event, webhook


def test_without_a_host_a_call_says_how_to_test():
    with pytest.raises(RuntimeError, match="FakeHost"):
        kv.get("x")


def test_kv_keeps_json_values_counters_and_expiry():
    host = FakeHost()
    with host:
        assert kv.get("ticket") is None
        kv.set("ticket", {"team": "billing", "n": [1, 2]})
        assert kv.get("ticket") == {"team": "billing", "n": [1, 2]}
        assert kv.increment("seen") == 1
        assert kv.increment("seen", 41) == 42
        with pytest.raises(InvalidInput, match="not a counter"):
            kv.increment("ticket")
        kv.set("short", 1, ttl_seconds=10)
        host.now_ms = host._now() + 10_001
        assert kv.get("short") is None
        assert kv.delete("ticket") is True
        assert kv.delete("ticket") is False
        with pytest.raises(Internal, match="not JSON"):
            kv.set("bad", object())
        kv.set_bytes("raw", b"\xff")
        with pytest.raises(InvalidInput, match="not JSON"):
            kv.get("raw")
    assert host.kv_json("seen") == 42


def test_a_capability_not_granted_is_denied_but_logging_never_fails_a_handler():
    host = FakeHost(grants=[Capability.KV])
    with host:
        kv.set("a", 1)
        with pytest.raises(Denied, match="`config` is not granted"):
            config.get("x")
        log.info("dropped quietly", n=1)
        with pytest.raises(Denied):
            log.write("info", "refused")
    assert host.logs == []


def test_log_fields_become_text():
    host = FakeHost()
    with host:
        log.warn("order assessed", order=1001, risk=0.12)
        with pytest.raises(ValueError):
            log.write("loud", "no such level")
    assert (host.logs[0].level, host.logs[0].message, host.logs[0].fields) == (
        "warn",
        "order assessed",
        {"order": "1001", "risk": "0.12"},
    )


def test_config_get_and_require():
    with FakeHost(config={"channel": "C1", "n": 3}):
        assert config.get("channel") == "C1"
        assert config.get("n") == "3"
        assert config.get("missing", "default") == "default"
        with pytest.raises(InvalidInput, match="`missing` is not set"):
            config.require("missing")
        assert config.all() == [("channel", "C1"), ("n", "3")]


def test_http_builds_requests_with_placeholders_and_maps_failures():
    host = FakeHost()
    host.http.on("POST", "https://api.example.com/v1/things", status=201, json={"id": 7})
    host.http.on("GET", "https://api.example.com/v1/slow", status=429, headers=[("Retry-After", "3")])
    with host:
        reply = (
            http.post("https://api.example.com/v1/things")
            .bearer(http.secret("example_token"))
            .json({"name": "widget"})
            .retry()
            .send()
        )
        assert reply.is_success and reply.json() == {"id": 7}
        slow = http.get("https://api.example.com/v1/slow").send()
        assert slow.retry_after_ms() == 3000
        assert slow.error("listing things") == RateLimited(3000)
        with pytest.raises(Denied, match="no fixture for GET https://elsewhere.example/"):
            http.get("https://elsewhere.example/").send()
    sent = host.http.requests[0]
    assert sent.headers == [("authorization", "Bearer {{secret:example_token}}"), ("content-type", "application/json")]
    assert sent.body_bytes == b'{"name":"widget"}' and sent.retries
    for status, kind in [(400, InvalidInput), (404, NotFound), (403, Unauthorized), (503, Upstream)]:
        assert type(http.Response(status).error("x")) is kind
    assert http.Response(503).error("x").retryable
    with pytest.raises(Upstream, match="not JSON"):
        http.Response(200, body=b"<html>").json()


def test_ai_chat_sends_the_conversation_and_parses_json():
    host = FakeHost()
    host.ai.reply({"risk": "low"}, model="m-1").reply("not json").fail(RateLimited(500))
    schema = {"type": "object"}
    with host:
        answer = ai.Chat().system("Judge.").user("Order 1").temperature(0).json_schema(schema).send()
        assert answer.json() == {"risk": "low"} and answer.model == "m-1"
        with pytest.raises(Upstream, match="invalid JSON"):
            ai.Chat().user("again").send().json()
        with pytest.raises(RateLimited):
            ai.Chat().user("third").send()
        with pytest.raises(Denied, match="no canned AI reply"):
            ai.Agent().user("fourth").tool("shop.get-order").send()
    first = host.ai.requests[0]
    assert [(m.role, m.content) for m in first.messages] == [("system", "Judge."), ("user", "Order 1")]
    assert (first.temperature, first.response_format, first.schema) == (0.0, "json_schema", schema)
    assert host.ai.requests[3].tools == ["shop.get-order"]


def test_emit_and_events():
    host = FakeHost()
    with host:
        assert emit.publish(NewEvent.json("alerts/raised", {"order": 1}).with_attribute("order_id", 1)) == "emitted-1"
    assert host.emitted[0].attributes == [("order_id", "1")]
    e = event("orders/create", {"id": 1}, attributes=[("shop", "a")])
    assert e.json() == {"id": 1} and e.attribute("shop") == "a" and e.attribute("none") is None
    with pytest.raises(InvalidInput, match="payload"):
        event("x/y", raw=b"{").json()
    with pytest.raises(Internal, match="not JSON"):
        NewEvent.json("x/y", {1, 2})
    w = webhook({"a": 1}, headers=[("X-Topic", "orders/create")])
    assert w.header("x-topic") == "orders/create" and w.json() == {"a": 1}


def test_metadata_and_hints():
    m = Metadata("x", "0.1.0", "d").produces("x/y").action("go", "Goes").requests(Capability.HTTP, "kv")
    assert m.capabilities == [Capability.HTTP, Capability.KV]
    assert m.actions[0].input_schema == {"type": "object"}
    read = Hints("get", read_only=True)
    assert (read.destructive, read.idempotent) == (False, True)
    assert Hints("delete").destructive


class Minimal(Connector):
    def metadata(self):
        return Metadata("minimal", "0.1.0", "d")


def test_a_connector_supports_only_what_it_overrides():
    with FakeHost():
        with pytest.raises(NotFound):
            Minimal().handle(event("a/b", {}))
        with pytest.raises(NotFound, match="unknown action `go`"):
            Minimal().invoke("go", {})
    assert Minimal().action_hints() == []


def test_outside_a_component_export_gives_nothing_to_build():
    assert export(Minimal) == (None, None)
    with pytest.raises(TypeError):
        export(object)


def test_errors_map_to_the_contract_and_back():
    wit = SimpleNamespace(
        UpstreamFailure=lambda status, message: SimpleNamespace(status=status, message=message),
        **{
            name: type(name, (), {"__init__": lambda self, value=None: setattr(self, "value", value)})
            for name in [
                "Error_InvalidInput",
                "Error_Unauthorized",
                "Error_NotFound",
                "Error_Denied",
                "Error_RateLimited",
                "Error_Timeout",
                "Error_Upstream",
                "Error_Internal",
                "Error_QuotaExceeded",
            ]
        },
    )
    cases = [
        InvalidInput("bad"),
        NotFound("gone"),
        Denied("no"),
        Unauthorized("who"),
        RateLimited(250),
        RateLimited(None),
        Upstream(502, "bad gateway"),
        errors.Timeout("slow"),
        errors.QuotaExceeded("spent"),
        Internal("bug"),
    ]
    for e in cases:
        assert errors.from_wit(errors.to_wit(e, wit)) == e

    class Custom(NotFound):
        pass

    assert type(errors.to_wit(Custom("sub"), wit)).__name__ == "Error_NotFound"
    assert type(errors.to_wit(errors.PluginError("base"), wit)).__name__ == "Error_Internal"


def test_waits_and_statuses_are_read_as_the_rust_sdk_reads_them():
    wait = lambda name, value: http.Response(429, [(name, value)]).retry_after_ms()  # noqa: E731
    assert wait("Retry-After", "3") == 3000
    assert wait("Retry-After", "+3") == 3000
    assert wait("Retry-After", "1.5") is None  # whole seconds only
    assert wait("Retry-After", "Wed, 21 Oct 2026 07:28:00 GMT") is None
    assert wait("retry-after-ms", "250.7") == 250
    assert wait("retry-after-ms", "-5") == 0
    assert wait("retry-after-ms", "nan") == 0
    assert wait("retry-after-ms", "1e400") == errors.U64_MAX
    assert str(http.Response(503).error("listing orders")) == "HTTP 503: listing orders"
    assert http.Response(503).error("x").upstream_message == "HTTP 503: x"


def test_values_the_contract_cannot_carry_are_refused_or_brought_into_range():
    with pytest.raises(Internal, match="not JSON"):
        NewEvent.json("x/y", float("nan"))
    with FakeHost(), pytest.raises(Internal, match="not JSON"):
        kv.set("k", float("inf"))
    assert errors.clamp_u64(1e30) == errors.U64_MAX
    assert errors.clamp_u64(-1) == 0
    assert errors.clamp_u64(2.9) == 2
    assert errors.clamp_u64(None) is None


def test_through_connector_a_capability_the_plugin_did_not_request_is_denied_as_the_host_does():
    class Forgetful(Connector):
        def metadata(self):
            return Metadata("forgetful", "0.1.0", "d").requests(Capability.LOG)

        def handle(self, event):
            kv.increment("seen")
            return []

    host = FakeHost()
    with pytest.raises(Denied, match="not requested"):
        host.connector(Forgetful).handle(event("a/b", {}))
    # Called directly, the fake host cannot know what it requested.
    with host:
        assert Forgetful().handle(event("a/b", {})) == []
