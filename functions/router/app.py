"""$default: one Phoenix-protocol frame from a client (join, leave, heartbeat, ...)."""
from ripple.channels.router import on_frame
from ripple.events import WebSocketEvent
from ripple.observability import lambda_handler


@lambda_handler("router")
def handler(event, context):
    return on_frame(WebSocketEvent.model_validate(event))
