"""The notifications REST API under /api/: the inbox, creating, unsubscribe links, OpenAPI."""
from ripple.notify.api import on_request
from ripple.observability import lambda_handler


@lambda_handler("api")
def handler(event, context):
    return on_request(event, context)
