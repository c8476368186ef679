"""Exporting a `Connector` class as the component's `plugin` and `action-hints` interfaces.

componentize-py looks for classes named `Plugin` and `ActionHints` in the app module, so an app
ends with:

    Plugin, ActionHints = plugboard_sdk.export(MyConnector)

Outside a component (tests, a plain `python` run) both are None: the generated bindings do not
exist there, and the connector class is called directly.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, TypeVar

from .connector import Connector
from .errors import Internal, InvalidInput, PluginError, to_wit
from .types import Event, Hints, NewEvent, WebhookReply, WebhookRequest, _to_json

T = TypeVar("T")


def export(connector: type[Connector]) -> tuple[Optional[type], Optional[type]]:
    """The classes componentize-py exports for `connector`; (None, None) outside a component."""
    if not (isinstance(connector, type) and issubclass(connector, Connector)):
        raise TypeError("export() takes a subclass of plugboard_sdk.Connector")
    try:
        from componentize_py_types import Err
    except ImportError:
        # Not in a component (pytest, a plain `python`): nothing to export.
        return None, None
    # In a component: these must exist, and a failure here (a build for another world) must say so.
    from wit_world import exports
    from wit_world.exports import action_hints as raw_hints
    from wit_world.imports import types

    from ._wit import fields, new_event_to_wit, payload

    def guarded(f: Callable[[], T]) -> T:
        """Runs a handler: a `PluginError` becomes its case of the WIT error, any other exception
        `internal` with its type and message (rather than a trap, which says nothing)."""
        try:
            return f()
        except PluginError as e:
            raise Err(to_wit(e, types)) from None
        except Exception as e:  # noqa: BLE001 - every escape becomes a typed error
            raise Err(types.Error_Internal(f"{type(e).__name__}: {e}")) from None

    def events_to_wit(events: Any, what: str) -> list[Any]:
        if not isinstance(events, (list, tuple)):
            raise Internal(f"{what} must return a list of NewEvent, not {type(events).__name__}")
        return [new_event_to_wit(e) for e in events]

    def metadata() -> Any:
        m = connector().metadata()
        return types.ConnectorMetadata(
            m.name,
            m.version,
            m.description,
            list(m.produced),
            [types.Action(a.name, a.description, json.dumps(a.input_schema, allow_nan=False)) for a in m.actions],
            [getattr(types.Capability, c.name) for c in m.capabilities],
            None if m.verification is None else getattr(types.VerificationScheme, m.verification.name),
        )

    def on_webhook(request: Any) -> Any:
        req = WebhookRequest(request.method, request.path, request.query, list(request.headers), bytes(request.body))
        reply = connector().on_webhook(req)
        if not isinstance(reply, WebhookReply):
            raise Internal(f"on_webhook must return a WebhookReply, not {type(reply).__name__}")
        events = events_to_wit(reply.events, "on_webhook's reply")
        status = reply.status
        if isinstance(status, bool) or not isinstance(status, int) or not 0 <= status <= 65535:
            raise Internal(f"on_webhook's reply status must be a number, not {status!r}")
        headers = fields(reply.headers, "on_webhook's reply headers")
        return types.WebhookReply(status, headers, payload(reply.body, "on_webhook's reply body"), events)

    def handle(event: Any) -> list[Any]:
        e = Event(
            event.id,
            event.source,
            event.kind,
            event.occurred_at_ms,
            event.content_type,
            bytes(event.payload),
            list(event.attributes),
        )
        return events_to_wit(connector().handle(e), "handle")

    def invoke(action: str, input_json: str) -> str:
        try:
            value = json.loads(input_json)
        except ValueError as e:
            raise InvalidInput(f"action input is not JSON: {e}") from None
        output = connector().invoke(action, value)
        return _to_json(output, f"the output of action `{action}`").decode()

    def hints_to_wit(h: Hints) -> Any:
        schema = None if h.output_schema is None else json.dumps(h.output_schema)
        return raw_hints.Hints(
            h.action, h.title, h.read_only, h.destructive, h.idempotent, h.open_world, schema
        )

    class Plugin(exports.Plugin):
        def metadata(self) -> Any:
            return metadata()

        def on_webhook(self, request: Any) -> Any:
            return guarded(lambda: on_webhook(request))

        def handle(self, event: Any) -> list[Any]:
            return guarded(lambda: handle(event))

        def invoke(self, action: str, input_json: str) -> str:
            return guarded(lambda: invoke(action, input_json))

    class ExportedHints(exports.ActionHints):
        def action_hints(self) -> list[Any]:
            return [hints_to_wit(h) for h in connector().action_hints()]

    return Plugin, ExportedHints
