"""$default: one Phoenix-protocol frame from a client (join, leave, heartbeat, ...)."""
from ripple.events import MessageEvent
from ripple.observability import lambda_handler
from ripple.router.router import on_frame


@lambda_handler("router")
def handler(event, context):
    return on_frame(MessageEvent.model_validate(event))
