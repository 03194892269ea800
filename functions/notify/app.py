"""Notification delivery: in-app rows become email (SES) and SMS (SNS), each exactly once."""
from ripple.notify.handler import NotifyEvent, on_event
from ripple.observability import lambda_handler


@lambda_handler("notify")
def handler(event, context):
    return on_event(NotifyEvent.model_validate(event or {}), context)
