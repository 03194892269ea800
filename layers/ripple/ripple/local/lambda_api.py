"""The Lambda Invoke API on loopback, for the functions Ripple itself invokes (the poster): boto3's
`lambda` client reaches it through AWS_ENDPOINT_URL_LAMBDA.

    api = LambdaApi({"ripple-poster": load_handler("poster").handler})
    await api.start()      # POST {api.url}/2015-03-31/functions/ripple-poster/invocations

A synchronous (RequestResponse) invocation runs the handler on a worker thread of its own pool
(so K posters run at once, apart from the gateway's handlers) and answers what it returned, as
JSON; a handler that raises or runs past its timeout answers 200 with
`X-Amz-Function-Error: Unhandled` and Lambda's error body (errorMessage, errorType, stackTrace).
A timed-out handler's thread is left to finish on its own: unlike Lambda, a thread cannot be
stopped.
An unknown function is a 404 ResourceNotFoundException, a request over 6 MB a 413
RequestTooLargeException, a body that is not JSON a 400 InvalidRequestContentException.
"""
from __future__ import annotations

import asyncio
import contextvars
import json
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from ripple.local.http import serve
from ripple.local.lambdas import Handler, LambdaContext
from ripple.log import logger

INVOCATIONS_PATH = "/2015-03-31/functions/{function}/invocations"
ARN_PREFIX = "arn:aws:lambda:us-east-1:000000000000:function:"
# Lambda's quota for a synchronous invocation's request and response payloads.
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
TIMEOUT_SECONDS = 30.0
# Invocations running at once: as many as the transport keeps in flight (ripple.aws).
THREADS = 96


def function_name(reference: str) -> str:
    """The name in a FunctionName as Invoke accepts it: `name`, `name:qualifier`,
    `123456789012:function:name` or a full ARN."""
    name = reference.split(":function:", 1)[1] if ":function:" in reference else reference
    return name.split(":", 1)[0]


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"Type": "User", "message": message}, status=status,
                             headers={"x-amzn-ErrorType": code})


def _function_error(request_id: str, kind: str, message: str, stack: list[str]) -> web.Response:
    body = {"errorMessage": message, "errorType": kind, "requestId": request_id, "stackTrace": stack}
    return web.json_response(body, headers={"X-Amz-Function-Error": "Unhandled",
                                            "X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id})


class LambdaApi:
    """An aiohttp server answering Invoke for `functions` (name → handler); `invocations`
    counts the invocations each function has had."""

    def __init__(self, functions: Mapping[str, Handler], host: str = "127.0.0.1", port: int = 0,
                 timeout: float = TIMEOUT_SECONDS):
        self.functions = dict(functions)
        self.host, self.port, self.timeout = host, port, timeout
        self.invocations: Counter[str] = Counter()
        self.app = web.Application(client_max_size=MAX_PAYLOAD_BYTES + 1024)
        self.app.router.add_post(INVOCATIONS_PATH, self._invoke)
        self._runner: web.AppRunner | None = None
        self._pool = ThreadPoolExecutor(THREADS, thread_name_prefix="ripple-local-lambda")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; with port 0 the OS picks a free port."""
        self._runner, self.port = await serve(self.app, self.host, self.port)

    async def stop(self) -> None:
        """Stop serving; handlers still running finish on their threads."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._pool.shutdown(wait=False)

    async def _invoke(self, request: web.Request) -> web.Response:
        name = function_name(request.match_info["function"])
        handler = self.functions.get(name)
        if handler is None:
            return _error(404, "ResourceNotFoundException", f"Function not found: {ARN_PREFIX}{name}")
        kind = request.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        if kind != "RequestResponse":
            return _error(400, "InvalidParameterValueException", f"Locally only RequestResponse is served, not {kind}")
        raw = await request.read()
        if len(raw) > MAX_PAYLOAD_BYTES:
            return _error(413, "RequestTooLargeException", "Request must be smaller than 6291456 bytes for the InvokeFunction operation")
        try:
            event = json.loads(raw) if raw else {}
        except ValueError:
            return _error(400, "InvalidRequestContentException", "Could not parse request body into json")
        request_id = str(uuid.uuid4())
        self.invocations[name] += 1
        context = LambdaContext(name, request_id)
        context.deadline = time.monotonic() + self.timeout
        try:
            run = asyncio.get_running_loop().run_in_executor(
                self._pool, contextvars.copy_context().run, handler, event, context)
            result = await asyncio.wait_for(run, self.timeout)
        except TimeoutError:
            return _function_error(request_id, "Sandbox.Timedout", f"Task timed out after {self.timeout:.2f} seconds", [])
        except Exception as exc:
            logger.exception("local function raised", extra={"function": name})
            return _function_error(request_id, type(exc).__name__, str(exc),
                                   traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        body = json.dumps(result).encode()
        if len(body) > MAX_PAYLOAD_BYTES:
            return _function_error(request_id, "Function.ResponseSizeTooLarge",
                                   f"Response payload size exceeded maximum allowed payload size ({MAX_PAYLOAD_BYTES} bytes).", [])
        return web.Response(body=body, content_type="application/json",
                            headers={"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": request_id})
