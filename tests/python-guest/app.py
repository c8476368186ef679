"""A connector written in Python, built into a component with componentize-py.

It shows that the contract admits plugins from other languages: `handle` counts events in kv
and answers with an `python/seen` event; `invoke("shout")` upper-cases `input.text`.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import kv, log, types


class Plugin(exports.Plugin):
    def metadata(self) -> types.ConnectorMetadata:
        return types.ConnectorMetadata(
            name="python-shout",
            version="0.1.0",
            description="A connector written in Python",
            produces=["python/seen"],
            actions=[types.Action("shout", "Upper-cases input.text", '{"type": "object"}')],
            capabilities=[types.Capability.KV, types.Capability.LOG],
            webhook_verification=None,
        )

    def on_webhook(self, request: types.WebhookRequest) -> types.WebhookReply:
        raise Err(types.Error_NotFound("no webhooks"))

    def handle(self, event: types.Event) -> list[types.NewEvent]:
        count = kv.increment("seen", 1)
        log.write(log.Level.INFO, "python saw " + event.kind, [("event", event.id)])
        payload = json.dumps({"kind": event.kind, "count": count}).encode()
        return [types.NewEvent("python/seen", None, "application/json", payload, [])]

    def invoke(self, action: str, input_json: str) -> str:
        if action != "shout":
            raise Err(types.Error_NotFound("unknown action " + action))
        text = json.loads(input_json).get("text", "")
        return json.dumps({"text": text.upper()})
