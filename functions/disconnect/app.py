"""$disconnect: forget the connection and every binding it held."""
from ripple.connections import on_disconnect
from ripple.events import WebSocketEvent


def handler(event, context):
    return on_disconnect(WebSocketEvent.model_validate(event))
