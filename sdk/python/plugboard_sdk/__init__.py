"""Write plugboard plugins in Python.

A connector is a subclass of `Connector`, exported with one line:

    from plugboard_sdk import Capability, Connector, Event, Metadata, NewEvent, export, log

    class Greeter(Connector):
        def metadata(self):
            return Metadata("greeter", "0.1.0", "Says hello to every event").produces(
                "greetings/sent").requests(Capability.LOG)

        def handle(self, event):
            log.info("greeting", event=event.id)
            return [NewEvent.json("greetings/sent", {"to": event.source})]

    Plugin, ActionHints = export(Greeter)

Host capabilities live in one module each: `http`, `kv`, `log`, `emit`, `ai`, `config`. Each call
raises `Denied` when the operator did not grant the capability. Test handlers without building a
component with `plugboard_sdk.testing.FakeHost`.
"""

from . import ai, config, emit, http, kv, log
from .connector import Connector
from .errors import (
    Denied,
    Internal,
    InvalidInput,
    NotFound,
    PluginError,
    QuotaExceeded,
    RateLimited,
    Timeout,
    Unauthorized,
    Upstream,
)
from .export import export
from .types import (
    Action,
    Hints,
    Capability,
    Event,
    Metadata,
    NewEvent,
    VerificationScheme,
    WebhookReply,
    WebhookRequest,
)

# The componentize-py release the SDK is built and tested with (`./dev setup` installs it).
COMPONENTIZE_PY = "0.25.1"

__all__ = [
    "Action",
    "Hints",
    "COMPONENTIZE_PY",
    "Capability",
    "Connector",
    "Denied",
    "Event",
    "Internal",
    "InvalidInput",
    "Metadata",
    "NewEvent",
    "NotFound",
    "PluginError",
    "QuotaExceeded",
    "RateLimited",
    "Timeout",
    "Unauthorized",
    "Upstream",
    "VerificationScheme",
    "WebhookReply",
    "WebhookRequest",
    "ai",
    "config",
    "emit",
    "export",
    "http",
    "kv",
    "log",
]
