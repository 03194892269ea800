"""$connect: verify the client's JWT and record the connection."""
from ripple.connections import on_connect
from ripple.events import WebSocketEvent
from ripple.observability import lambda_handler


@lambda_handler("connect")
def handler(event, context):
    return on_connect(WebSocketEvent.model_validate(event))
