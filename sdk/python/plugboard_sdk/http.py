"""Outbound HTTP through the host.

The host checks each request against the instance's grant and fills `{{secret:NAME}}`,
`{{basic:NAME}}` and `{{oauth:NAME}}` placeholders in header values on the way out, so a secret
never enters the plugin:

    reply = (http.post("https://api.example.com/v1/things")
             .bearer(http.secret("example_token"))
             .json({"name": "widget"})
             .send())
    created = reply.json()
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import Any, Optional

from ._host import backend
from .types import _to_json
from .errors import U64_MAX, InvalidInput, NotFound, PluginError, RateLimited, Unauthorized, Upstream, clamp_u64


def secret(name: str) -> str:
    """The placeholder the host replaces with the secret `name` (never seen by the plugin)."""
    return "{{secret:" + name + "}}"


@dataclass
class Request:
    """An outbound request under construction."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_bytes: bytes = b""
    retries: bool = False

    def header(self, name: str, value: str) -> Request:
        """Adds a header."""
        self.headers.append((name, value))
        return self

    def bearer(self, token: str) -> Request:
        """`Authorization: Bearer <token>`; `token` is usually `secret("NAME")`."""
        return self.header("authorization", f"Bearer {token}")

    def oauth(self, name: str) -> Request:
        """`Authorization: Bearer` with an OAuth2 access token the host obtains, caches and
        refreshes for the client the operator configured as `name`."""
        return self.header("authorization", "Bearer {{oauth:" + name + "}}")

    def basic_auth(self, secret_name: str) -> Request:
        """`Authorization: Basic ...` from the secret `secret_name`, which holds `user:password`."""
        return self.header("authorization", "{{basic:" + secret_name + "}}")

    def retry(self) -> Request:
        """Lets the host retry this request on 429 and 5xx answers (honouring `Retry-After`) and on
        connection failures. Only for requests that are safe to repeat (a read, an idempotency
        key). When the retries cannot fit, a 429 comes back as `RateLimited`, and the pipeline
        reschedules the event."""
        self.retries = True
        return self

    def body(self, body: bytes) -> Request:
        """Sets a raw body."""
        self.body_bytes = bytes(body)
        return self

    def json(self, value: Any) -> Request:
        """Sets a JSON body and its content type."""
        self.body_bytes = _to_json(value, "request body")
        return self.header("content-type", "application/json")

    def send(self) -> Response:
        """Sends the request through the host and waits for the answer. Any HTTP status is an
        answer: check `Response.status` (or `is_success`)."""
        return backend().http_send(self)


def get(url: str) -> Request:
    """A `GET` request."""
    return Request("GET", url)


def post(url: str) -> Request:
    """A `POST` request."""
    return Request("POST", url)


def request(method: str, url: str) -> Request:
    """A request with any method."""
    return Request(method.upper(), url)


@dataclass
class Response:
    """The answer to a request."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @property
    def is_success(self) -> bool:
        """Whether the status is 2xx."""
        return 200 <= self.status < 300

    def header(self, name: str) -> Optional[str]:
        """The first header named `name`, compared without case."""
        name = name.lower()
        return next((v for k, v in self.headers if k.lower() == name), None)

    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; `Upstream` when it is not JSON."""
        try:
            return _json.loads(self.body)
        except ValueError as e:
            raise Upstream(self.status, f"response body is not JSON: {e}") from None

    def retry_after_ms(self) -> Optional[int]:
        """How long the server asked to wait: `retry-after-ms`, or `Retry-After` in whole seconds
        (an HTTP date is not read)."""
        ms = self.header("retry-after-ms")
        if ms is not None:
            try:
                return clamp_u64(float(ms.strip()))
            except ValueError:
                pass
        seconds = self.header("retry-after")
        if seconds is not None:
            text = seconds.strip().removeprefix("+")
            if text.isascii() and text.isdigit():
                return min(int(text) * 1000, U64_MAX)
        return None

    def error(self, message: str) -> PluginError:
        """The contract error for a failed answer, by status: 400/409/413/422 -> `InvalidInput`,
        404 -> `NotFound`, 401/403 -> `Unauthorized`, 429 -> `RateLimited` (with the server's
        wait), anything else -> `Upstream` (retried). `message` says what was asked."""
        text = f"HTTP {self.status}: {message}"
        if self.status in (400, 409, 413, 422):
            return InvalidInput(text)
        if self.status == 404:
            return NotFound(text)
        if self.status in (401, 403):
            return Unauthorized(text)
        if self.status == 429:
            return RateLimited(self.retry_after_ms())
        return Upstream(self.status, text)
