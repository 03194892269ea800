"""A local HTTP endpoint standing in for SESv2 or SNS whose answers to sends get lost.

It reads every request in full — the provider has it — and then, as `mode` says, holds the
connection without answering (`hang`: the client's read timeout fires), hangs up (`hang_up`),
answers 200 with a body that is not the API's answer (`garbled`), answers throttling
(`throttle`), or accepts (`accept`). SNS's opt-out lookups are always answered. Real boto3
clients reach it through `endpoint_url`, as they reach AWS.
"""
from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
from botocore.config import Config

from ripple.aws import _SEND_CONFIG

SNS_XMLNS = "http://sns.amazonaws.com/doc/2010-03-31/"


class LossyProvider:
    """`sends` holds the body of every SendEmail / Publish request that arrived, in order."""

    def __init__(self, service: str, mode: str):
        self.service, self.mode = service, mode
        self.sends: list[bytes] = []
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def client(self, read_timeout: float | None = None):
        """A boto3 client built with the delivery function's config, pointed here; a shorter
        `read_timeout` keeps `hang` quick."""
        config = _SEND_CONFIG if read_timeout is None else _SEND_CONFIG.merge(Config(read_timeout=read_timeout))
        return boto3.client(self.service, endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test", config=config)

    def email_tags(self, n: int = 0) -> dict[str, str]:
        """The message tags of the n-th SendEmail that arrived."""
        return {t["Name"]: t["Value"] for t in json.loads(self.sends[n]).get("EmailTags", [])}

    def __enter__(self) -> LossyProvider:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    # -- answers ------------------------------------------------------------------------------
    def answer(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        action = urllib.parse.parse_qs(body.decode()).get("Action", [""])[0] if self.service == "sns" else ""
        if action == "CheckIfPhoneNumberIsOptedOut":
            return self._reply(handler, 200, _sns("CheckIfPhoneNumberIsOptedOut",
                                                  "<isOptedOut>false</isOptedOut>"), "text/xml")
        self.sends.append(body)
        if self.mode == "hang":
            self._released.wait(30)
            handler.close_connection = True
        elif self.mode == "hang_up":
            handler.close_connection = True
        elif self.mode == "garbled":
            self._reply(handler, 200, b"<html>Service temporarily unavailable", "text/html")
        elif self.mode == "throttle":
            if self.service == "sns":
                self._reply(handler, 429, b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttled</Code>"
                                          b"<Message>Rate exceeded</Message></Error></ErrorResponse>", "text/xml")
            else:
                self._reply(handler, 429, b'{"message": "Maximum sending rate exceeded."}',
                            headers={"x-amzn-ErrorType": "TooManyRequestsException"})
        elif self.service == "sns":
            self._reply(handler, 200, _sns("Publish", f"<MessageId>sns-{len(self.sends)}</MessageId>"),
                        "text/xml")
        else:
            self._reply(handler, 200, json.dumps({"MessageId": f"ses-{len(self.sends)}"}).encode())

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes,
               content_type: str = "application/json", headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


def _sns(action: str, result: str) -> bytes:
    return (f'<{action}Response xmlns="{SNS_XMLNS}"><{action}Result>{result}</{action}Result>'
            f"<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>").encode()


def _handler(provider: LossyProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            provider.answer(self, body)

        def log_message(self, *_) -> None:
            pass

    return Handler


def nothing_listening() -> str:
    """An endpoint URL on a port nobody listens on: connecting fails before anything is sent."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"
