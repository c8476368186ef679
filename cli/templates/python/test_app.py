"""{{name}}'s tests: `python3 -m pytest`, against a fake host, no component needed.

After `./build.sh`, the same tests run against the built component in the real host:
`PLUGBOARD_COMPONENT={{name}}.wasm python3 -m pytest` (plugboard on PATH, or PLUGBOARD_BIN).
"""

import pytest
from plugboard_sdk import InvalidInput, NotFound
from plugboard_sdk.testing import FakeHost, event, webhook

from app import {{class}}, summarize


def test_summarize_counts_fields():
    assert summarize({"id": 1, "total": "9.99"}) == {"fields": 2, "has_id": True}
    assert summarize("not an object") == {"fields": 0, "has_id": False}


def test_an_event_is_summarized_and_logged():
    # The grants an operator would give it: only `log`.
    host = FakeHost(grants=["log"])
    out = host.connector({{class}}).handle(event("orders/create", {"id": 1, "total": "9.99"}, id="e-1"))
    assert [e.kind for e in out] == ["{{name}}/summarized"]
    assert out[0].decoded() == {"fields": 2, "has_id": True}
    assert [(line.message, line.fields) for line in host.logs] == [("summarizing orders/create", {"event": "e-1"})]


def test_a_payload_that_is_not_json_is_invalid_input():
    with pytest.raises(InvalidInput):
        FakeHost().connector({{class}}).handle(event("orders/create", raw=b"not json"))


def test_a_webhook_becomes_an_event():
    reply = FakeHost().connector({{class}}).on_webhook(webhook({"id": 7}))
    assert reply.status == 200
    assert [(e.kind, e.decoded()) for e in reply.events] == [("{{name}}/received", {"id": 7})]


def test_actions():
    plugin = FakeHost().connector({{class}})
    assert plugin.invoke("greet", {"name": "Ada"}) == {"greeting": "hello, Ada"}
    with pytest.raises(NotFound):
        plugin.invoke("no-such-action", {})
