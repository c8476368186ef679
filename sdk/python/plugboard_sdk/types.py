"""The contract's records: events, webhooks, metadata, action hints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable, Optional

from .errors import Internal, InvalidInput

Fields = list[tuple[str, str]]


def _to_json(value: Any, what: str) -> bytes:
    """`value` as serde_json writes it (compact, keys sorted, UTF-8): the same value is the same
    bytes from every SDK, so that a Python rewrite replays byte for byte against a Rust build."""
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise Internal(f"{what} is not JSON: {e}") from None


class Capability(str, Enum):
    """A host capability a plugin requests; the operator grants it or not."""

    HTTP = "http"
    KV = "kv"
    LOG = "log"
    EMIT = "emit"
    AI = "ai"
    CONFIG = "config"


class VerificationScheme(str, Enum):
    """How the host verifies a connector's webhooks before the plugin sees them."""

    NONE = "none"
    SHOPIFY = "shopify"
    SLACK = "slack"
    STRIPE = "stripe"
    GITHUB = "github"
    STANDARD_WEBHOOKS = "standard-webhooks"
    HMAC = "hmac"


@dataclass
class Action:
    """An action the connector offers: its name, one line for people and AI clients, and the
    JSON Schema of its input."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass
class Metadata:
    """What a connector is, produces, offers and requests. Built with chained calls:

    >>> Metadata("greeter", "0.1.0", "Says hello").produces("greetings/sent").requests(Capability.LOG).name
    'greeter'
    """

    name: str
    version: str
    description: str
    produced: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    capabilities: list[Capability] = field(default_factory=list)
    verification: Optional[VerificationScheme] = None

    def produces(self, kind: str) -> Metadata:
        """Declares an event kind it produces."""
        self.produced.append(kind)
        return self

    def action(self, name: str, description: str, input_schema: Optional[dict[str, Any]] = None) -> Metadata:
        """Declares an action with the JSON Schema of its input (any object when omitted)."""
        self.actions.append(Action(name, description, input_schema or {"type": "object"}))
        return self

    def requests(self, *capabilities: Capability) -> Metadata:
        """Requests capabilities; the operator decides what to grant."""
        self.capabilities.extend(Capability(c) for c in capabilities)
        return self

    def verifies_with(self, scheme: VerificationScheme) -> Metadata:
        """Names the webhook signature scheme its provider uses."""
        self.verification = VerificationScheme(scheme)
        return self


@dataclass
class Hints:
    """How one action behaves, for AI clients (MCP tool annotations) and operators. The defaults
    assume the worst, as for an action without hints: it may delete or overwrite, and repeating
    it may repeat its effect. A read-only action is neither destructive nor unsafe to repeat."""

    action: str
    title: Optional[str] = None
    read_only: bool = False
    destructive: bool = True
    idempotent: bool = False
    open_world: bool = True
    output_schema: Optional[dict[str, Any]] = None

    def __post_init__(self) -> None:
        if self.read_only:
            self.destructive = False
            self.idempotent = True


@dataclass
class Event:
    """An event delivered to `handle`."""

    id: str
    source: str
    kind: str
    occurred_at_ms: int
    content_type: str
    payload: bytes
    attributes: Fields = field(default_factory=list)

    def json(self) -> Any:
        """The payload parsed as JSON; `InvalidInput` (not retried) when it is not JSON."""
        try:
            return json.loads(self.payload)
        except ValueError as e:
            raise InvalidInput(f"event {self.id} payload: {e}") from None

    def text(self) -> str:
        """The payload as UTF-8 text."""
        try:
            return self.payload.decode()
        except UnicodeDecodeError as e:
            raise InvalidInput(f"event {self.id} payload: {e}") from None

    def attribute(self, name: str) -> Optional[str]:
        """The first attribute named `name`."""
        return next((v for k, v in self.attributes if k == name), None)


@dataclass
class NewEvent:
    """An event a plugin produces; the host gives it its id, source and time."""

    kind: str
    payload: bytes = b""
    content_type: str = "application/octet-stream"
    occurred_at_ms: Optional[int] = None
    attributes: Fields = field(default_factory=list)

    @classmethod
    def json(cls, kind: str, value: Any) -> NewEvent:
        """An event whose payload is `value` as JSON."""
        return cls(kind, _to_json(value, f"the payload of {kind}"), "application/json")

    def with_attribute(self, name: str, value: str) -> NewEvent:
        """Adds an attribute (routes and traces can use it)."""
        self.attributes.append((name, str(value)))
        return self

    def decoded(self) -> Any:
        """The payload parsed as JSON (for tests)."""
        return json.loads(self.payload)


@dataclass
class WebhookRequest:
    """A webhook the host received and verified. Header names are lower case."""

    method: str
    path: str
    query: str
    headers: Fields
    body: bytes

    def header(self, name: str) -> Optional[str]:
        """The first header named `name`."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def json(self) -> Any:
        """The body parsed as JSON; `InvalidInput` otherwise."""
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise InvalidInput(f"webhook body: {e}") from None


@dataclass
class WebhookReply:
    """The HTTP answer to a webhook, and the events to store (stored before the answer goes)."""

    status: int = 200
    headers: Fields = field(default_factory=list)
    body: bytes = b""
    events: list[NewEvent] = field(default_factory=list)

    @classmethod
    def ok(cls, events: Iterable[NewEvent] = ()) -> WebhookReply:
        """`200 OK` with an empty body, storing `events`."""
        return cls(events=list(events))

    def with_json_body(self, value: Any) -> WebhookReply:
        """Answers `value` as JSON."""
        self.body = _to_json(value, "the reply body")
        self.headers.append(("content-type", "application/json"))
        return self
