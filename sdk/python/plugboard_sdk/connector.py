"""The connector base class."""

from __future__ import annotations

from typing import Any

from .errors import NotFound
from .types import Hints, Event, Metadata, NewEvent, WebhookReply, WebhookRequest


class Connector:
    """A connector: turns webhooks into events, handles routed events and offers actions.

    Only `metadata` is required; the other methods answer "not supported" (`NotFound`) until
    overridden. A fresh object serves each call, as a fresh instance does in the host: keep state
    in `kv`, not in attributes.
    """

    def metadata(self) -> Metadata:
        """Describes the connector: what it produces, offers and requests."""
        raise NotImplementedError("a connector must describe itself: override metadata()")

    def on_webhook(self, request: WebhookRequest) -> WebhookReply:
        """Turns a verified webhook into events and the HTTP reply."""
        raise NotFound("this connector receives no webhooks")

    def handle(self, event: Event) -> list[NewEvent]:
        """Handles an event routed to this instance; returns the events it produces."""
        raise NotFound("this connector handles no events")

    def invoke(self, action: str, input: Any) -> Any:  # noqa: A002 - the contract's name
        """Runs `action` with its JSON input (already parsed); returns its JSON output."""
        raise NotFound(f"unknown action `{action}`")

    def action_hints(self) -> list[Hints]:
        """How the actions behave, for AI clients and operators. An action without hints is taken
        to be destructive."""
        return []
