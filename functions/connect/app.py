"""$connect: verify the client's JWT and record the connection."""
from ripple.events import WebSocketEvent
from ripple.router.connect import on_connect


def handler(event, context):
    return on_connect(WebSocketEvent.model_validate(event))
