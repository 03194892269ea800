"""moto's server mode on a loopback port, bound in the caller's thread so that a busy port is
an immediate error (moto's own ThreadedMotoServer waits forever when its thread fails to bind).

Served by waitress rather than werkzeug's development server (what ThreadedMotoServer uses),
for keep-alive: werkzeug answers every request with `Connection: close`, so each AWS call of
the stack opened a TCP connection and a server thread of its own; AWS's endpoints keep the
connection for the next call, and so does this server (idle connections hold no thread).
"""
from __future__ import annotations

import logging
import socket
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from waitress.server import BaseWSGIServer, create_server

# Request threads: moto holds the interpreter lock for most of a call, so a few suffice; more
# let a slow call (a Scan of a big table) not hold up the small ones behind it.
THREADS = 8


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
        logging.getLogger("waitress").setLevel(logging.WARNING)  # "Serving on ..." otherwise
        # "Task queue depth is N": calls waiting for a thread, routine under a benchmark's load.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        listener = socket.create_server((self.host, self.port))
        self.port = listener.getsockname()[1]
        # An AWS call can wait on a Lambda handler that makes AWS calls of its own: no limit
        # on connections, and no idle timeout shorter than a handler's run.
        self._server = create_server(app, sockets=[listener], threads=THREADS, channel_timeout=900,
                                     connection_limit=100_000, ident="moto")
        self._thread = threading.Thread(target=self._server.run, name="ripple-moto", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.task_dispatcher.shutdown()
            # Every channel (the listener and each client connection) closed: the loop, with
            # nothing left to watch, returns.
            for channel in list(server._map.values()):
                channel.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
