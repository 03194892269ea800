"""The notifications REST API under /api/: the inbox, creating, unsubscribe links, OpenAPI."""
from ripple.log import logger
from ripple.notify.api import on_request


@logger.inject_lambda_context
def handler(event, context):
    return on_request(event, context)
