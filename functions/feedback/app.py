"""SES bounce/complaint/delivery events, via SNS: delivery status and the suppression list."""
from ripple.notify.feedback import on_sns


def handler(event, context):
    return on_sns(event or {})
