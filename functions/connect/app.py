"""$connect: verify the client's JWT and record the connection."""
from ripple.events import ConnectEvent
from ripple.observability import lambda_handler
from ripple.router.connect import on_connect


@lambda_handler("connect")
def handler(event, context):
    return on_connect(ConnectEvent.model_validate(event))
