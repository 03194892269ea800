"""$default: one Phoenix-protocol frame from a client (join, leave, heartbeat, ...)."""
from ripple.events import WebSocketEvent
from ripple.router.router import on_frame


def handler(event, context):
    return on_frame(WebSocketEvent.model_validate(event))
