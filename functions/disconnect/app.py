"""$disconnect: forget the connection and every binding it held."""
from ripple.connections import on_disconnect
from ripple.events import WebSocketEvent
from ripple.observability import lambda_handler


@lambda_handler("disconnect")
def handler(event, context):
    return on_disconnect(WebSocketEvent.model_validate(event))
