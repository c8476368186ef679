"""Chat completions through the AI provider the operator configured for this instance.

    answer = (ai.Chat()
              .system("Rate the fraud risk of this order from 0 to 1. Answer as JSON.")
              .user('{"total": "1999.00", "country": "NL"}')
              .temperature(0.0)
              .json_object()
              .send())
    verdict = answer.json()

`Agent` runs a conversation in which the model may call connector actions as tools; the host
runs each call with that instance's own grants.
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

from ._host import backend
from .errors import Upstream


@dataclass
class Message:
    """One message: `role` is system, user or assistant."""

    role: str
    content: str


@dataclass
class Usage:
    """Tokens used."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ChatRequest:
    """A chat completion request. `response_format` is `text`, `json_object` or `json_schema`
    (then `schema` is the JSON Schema)."""

    model: Optional[str] = None
    messages: list[Message] = field(default_factory=list)
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None
    response_format: str = "text"
    schema: Optional[dict[str, Any]] = None
    stop: list[str] = field(default_factory=list)


@dataclass
class ChatResponse:
    """The model's answer. `finish_reason` is stop, length, content-filter, tool-calls or other."""

    content: str
    model: str
    finish_reason: str = "stop"
    usage: Usage = field(default_factory=Usage)
    request_id: Optional[str] = None

    def json(self) -> Any:
        """The content parsed as JSON; `Upstream` (retried) when the model answered otherwise."""
        try:
            return _json.loads(self.content)
        except ValueError as e:
            raise Upstream(200, f"model {self.model} answered with invalid JSON: {e}") from None


Built = TypeVar("Built", bound="_Conversation")


class _Conversation:
    """What a chat and an agent conversation are built with alike."""

    request: Any

    def model(self: Built, model: str) -> Built:
        """Names the model (the provider instance's default otherwise)."""
        self.request.model = model
        return self

    def system(self: Built, content: str) -> Built:
        """Adds a system message: instructions."""
        self.request.messages.append(Message("system", content))
        return self

    def user(self: Built, content: str) -> Built:
        """Adds a user message."""
        self.request.messages.append(Message("user", content))
        return self

    def temperature(self: Built, t: float) -> Built:
        """Sets the sampling temperature (0 is deterministic, and cacheable by the host)."""
        self.request.temperature = float(t)
        return self


class Chat(_Conversation):
    """A chat request under construction."""

    def __init__(self) -> None:
        self.request: ChatRequest = ChatRequest()

    def assistant(self, content: str) -> Chat:
        """Adds an earlier answer of the model."""
        self.request.messages.append(Message("assistant", content))
        return self

    def max_tokens(self, n: int) -> Chat:
        """Caps the answer's length."""
        self.request.max_tokens = int(n)
        return self

    def stop(self, *sequences: str) -> Chat:
        """Stops the answer at any of `sequences`."""
        self.request.stop.extend(sequences)
        return self

    def json_object(self) -> Chat:
        """Asks for a JSON object."""
        self.request.response_format, self.request.schema = "json_object", None
        return self

    def json_schema(self, schema: dict[str, Any]) -> Chat:
        """Asks for JSON that conforms to `schema`."""
        self.request.response_format, self.request.schema = "json_schema", schema
        return self

    def send(self) -> ChatResponse:
        """Runs the completion."""
        return backend().ai_complete(self.request)


@dataclass
class ToolCall:
    """A call the model asked for: `name` is `instance_action`, `arguments` JSON text."""

    id: str
    name: str
    arguments: str


@dataclass
class ToolRound:
    """One call and what it answered (the action's output as JSON text, or its error)."""

    call: ToolCall
    output: str
    is_error: bool = False


@dataclass
class AgentRequest:
    """A conversation in which the model may call `tools` (`instance.action`)."""

    model: Optional[str] = None
    messages: list[Message] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    max_rounds: Optional[int] = None
    temperature: Optional[float] = None
    max_tokens: Optional[int] = None


@dataclass
class AgentResponse:
    """The model's final answer, and the calls it made on the way."""

    content: str
    model: str
    rounds: list[ToolRound] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)


class Agent(_Conversation):
    """A conversation in which the model may call connector actions as tools. Each action must be
    in this instance's `grants.ai_tools`; the host runs the calls until the model answers."""

    def __init__(self) -> None:
        self.request: AgentRequest = AgentRequest()

    def tool(self, action: str) -> Agent:
        """Lets the model call a connector action, as `instance.action`."""
        self.request.tools.append(action)
        return self

    def max_rounds(self, n: int) -> Agent:
        """The most model turns that may ask for calls (at most 8)."""
        self.request.max_rounds = int(n)
        return self

    def send(self) -> AgentResponse:
        """Runs the conversation to the model's answer."""
        return backend().ai_agent(self.request)
