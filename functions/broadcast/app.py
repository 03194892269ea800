"""POST /realtime/v1/api/broadcast[/<topic>/events/<event>]: server-side broadcast, authorized by the
service_role key."""
from ripple.broadcast.api import HttpEvent, on_request
from ripple.observability import lambda_handler


@lambda_handler("broadcast")
def handler(event, context):
    return on_request(HttpEvent.model_validate(event))
