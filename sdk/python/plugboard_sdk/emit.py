"""Publishing events into the router, besides those a handler returns.

    event_id = emit.publish(NewEvent.json("alerts/raised", {"order": 1001}))
"""

from __future__ import annotations

from ._host import backend
from .types import NewEvent


def publish(event: NewEvent) -> str:
    """Publishes `event`; answers the id the host gave it."""
    return backend().emit_publish(event)
