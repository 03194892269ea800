"""$disconnect: forget the connection and every binding it held."""
from ripple.events import DisconnectEvent
from ripple.observability import lambda_handler
from ripple.router.connect import on_disconnect


@lambda_handler("disconnect")
def handler(event, context):
    return on_disconnect(DisconnectEvent.model_validate(event))
