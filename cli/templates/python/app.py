"""{{name}}: a plugboard connector.

- Webhooks sent to `/hooks/<instance>` become `{{name}}/received` events.
- Each event delivered to it is summarised into a `{{name}}/summarized` event.
- Action `greet` answers `{"greeting": "hello, <name>"}`.

Keep decisions in plain functions (like `summarize`): pytest checks them directly. The host
calls around them (log here; kv, http, ai, config, emit) are answered by
`plugboard_sdk.testing.FakeHost` in tests and by plugboard in production.
"""

from typing import Any

from plugboard_sdk import (
    Capability,
    Connector,
    Event,
    Hints,
    Metadata,
    NewEvent,
    NotFound,
    VerificationScheme,
    WebhookReply,
    WebhookRequest,
    export,
    log,
)


def summarize(payload: Any) -> dict[str, Any]:
    """What the plugin makes of an event's JSON payload."""
    fields = len(payload) if isinstance(payload, dict) else 0
    return {"fields": fields, "has_id": isinstance(payload, dict) and "id" in payload}


class {{class}}(Connector):
    def metadata(self) -> Metadata:
        return (
            Metadata("{{name}}", "0.1.0", "Describe what {{name}} does in one line")
            .produces("{{name}}/received")
            .produces("{{name}}/summarized")
            .action("greet", "Greets someone", {"type": "object", "properties": {"name": {"type": "string"}}})
            .requests(Capability.LOG)
            .verifies_with(VerificationScheme.HMAC)
        )

    def on_webhook(self, request: WebhookRequest) -> WebhookReply:
        return WebhookReply.ok([NewEvent.json("{{name}}/received", request.json())])

    def handle(self, event: Event) -> list[NewEvent]:
        log.info(f"summarizing {event.kind}", event=event.id)
        return [NewEvent.json("{{name}}/summarized", summarize(event.json()))]

    def invoke(self, action: str, input: Any) -> Any:
        if action == "greet":
            name = input.get("name", "world") if isinstance(input, dict) else "world"
            return {"greeting": f"hello, {name}"}
        raise NotFound(f"unknown action `{action}`")

    def action_hints(self) -> list[Hints]:
        # For AI clients and operators: `greet` only reads (an action without hints counts as
        # destructive).
        return [Hints("greet", title="Greet someone", read_only=True)]


# componentize-py builds these two names into the component's exports (both are None outside a
# component, as under pytest).
Plugin, ActionHints = export({{class}})
