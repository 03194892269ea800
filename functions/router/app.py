"""$default: one Phoenix-protocol frame from a client (join, leave, heartbeat, ...)."""
from ripple.events import MessageEvent
from ripple.router.router import on_frame


def handler(event, context):
    return on_frame(MessageEvent.model_validate(event))
