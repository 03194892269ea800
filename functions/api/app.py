"""The notifications REST API under /api/: the inbox, creating, unsubscribe links, OpenAPI."""
from ripple.notify.api import HttpEvent, on_request
from ripple.observability import lambda_handler


@lambda_handler("api")
def handler(event, context):
    return on_request(HttpEvent.model_validate(event))
