"""moto's server mode on a loopback port, bound in the caller's thread so that a busy port is
an immediate error (moto's own ThreadedMotoServer waits forever when its thread fails to bind)."""
from __future__ import annotations

import logging
import socket
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server


class MotoServer:
    """`start()` binds (raising OSError if it cannot) and serves in a daemon thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call otherwise
        app = DomainDispatcherApplication(create_backend_app)
        # Bound here: werkzeug binding a busy port prints a message and calls sys.exit().
        listener = socket.create_server((self.host, self.port))
        try:
            self._server = make_server(self.host, self.port, app, threaded=True,
                                       request_handler=MotoRequestHandler, fd=listener.fileno())
        finally:
            listener.close()  # the server holds its own duplicate of the socket
        self.port = self._server.port
        self._thread = threading.Thread(target=self._server.serve_forever, name="ripple-moto",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
