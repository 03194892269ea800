"""One shard of the fanout's deliveries, from a synchronous invocation: post it, answer its outcome."""
from ripple.observability import lambda_handler
from ripple.shards.poster import on_shard


@lambda_handler("poster")
def handler(event, context):
    return on_shard(event)
