"""SES bounce/complaint/delivery events, via SNS: delivery status and the suppression list."""
from ripple.notify.feedback import on_sns
from ripple.observability import lambda_handler


@lambda_handler("feedback")
def handler(event, context):
    return on_sns(event or {})
