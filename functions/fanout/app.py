"""Outbox wake-up: drain committed changes and push them to matching subscribers."""
from ripple.observability import lambda_handler
from ripple.outbox.drain import WakeEvent, on_wake


@lambda_handler("fanout")
def handler(event, context):
    return on_wake(WakeEvent.model_validate(event or {}), context)
