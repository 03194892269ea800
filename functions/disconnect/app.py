"""$disconnect: forget the connection and every binding it held."""
from ripple.events import DisconnectEvent
from ripple.router.connect import on_disconnect


def handler(event, context):
    return on_disconnect(DisconnectEvent.model_validate(event))
