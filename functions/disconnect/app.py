"""$disconnect: forget the connection and every binding it held."""
from ripple.events import WebSocketEvent
from ripple.router.connect import on_disconnect


def handler(event, context):
    return on_disconnect(WebSocketEvent.model_validate(event))
