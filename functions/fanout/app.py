"""Outbox wake-up: drain committed changes and push them to matching subscribers."""
from ripple.outbox.drain import WakeEvent, on_wake


def handler(event, context):
    return on_wake(WakeEvent.model_validate(event or {}))
