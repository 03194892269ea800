"""The local gateway in a process of its own, so that the WebSocket server, `@connections`, the
route handlers and the Lambda Invoke API for the poster function do not share one interpreter
lock with the fanout (`Stack(gateway_process=True)`).

The parent starts `python -m ripple.local.gatewayd` with its own environment and talks to it over
two pipes:

- the child's stdin carries the parent's commands, one JSON object a line: first the gateway's
  settings (`port`, `limits`), later `{"env": {...}}` (the Lambda settings, once the parent knows
  the gateway's URL), `{"ready": true}` (from then on `/health` answers 200) and `{"stop": true}`
  (close every socket, run each `$disconnect`, exit). End of file without a stop means the parent
  has died: the child exits at once, so no gateway outlives its stack.
- a pipe of its own carries one announcement back, `{"port": N, "functions_url": ...}` once
  bound (or `{"error": ...}`), and is closed; the child's stdout and stderr are the parent's, for the handlers' logs.

In the child the handlers are loaded and routed exactly as in the parent's process
(`ripple.local.stack.local_gateway`), with the same environment; only the Inspector's frame tap is
absent, as its activity log lives in the parent.
"""
from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

from ripple.local.connection import Limits
from ripple.local.gateway import STOP_SECONDS as DISCONNECT_SECONDS

LAYER = Path(__file__).resolve().parents[2]  # the directory that holds the `ripple` package
ANNOUNCE_SECONDS = 60.0
# The child's own stop waits at most DISCONNECT_SECONDS for $disconnects; it gets a little more.
STOP_SECONDS = DISCONNECT_SECONDS + 5.0
KILL_SECONDS = 5.0


class GatewayFailed(RuntimeError):
    """The gateway process did not come up; the message says why (its port's error, or its exit)."""

    def __init__(self, message: str, errno_: int | None = None):
        self.errno = errno_
        super().__init__(message)


class GatewayProcess:
    """The parent's handle on the gateway process: what callers of `Stack.gateway` use (`url`,
    `ws_url`, `port`, `pid`, `stop()`), plus the commands the stack sends it."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, limits: Limits | None = None,
                 ws_path: str = "/realtime/v1/websocket"):
        self.host, self.port, self.limits, self.ws_path = host, port, limits or Limits(), ws_path
        self.functions_url = ""  # the child's Lambda Invoke API, for AWS_ENDPOINT_URL_LAMBDA
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def url(self) -> str:
        """The management API endpoint, e.g. "http://127.0.0.1:54321" (the child's port)."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + self.ws_path

    def start(self) -> None:
        """Start the child and wait for its port; on any failure the child is gone before the
        error propagates (GatewayFailed carries the bind error's errno, when that was it)."""
        announce_read, announce_write = os.pipe()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(LAYER), env.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ripple.local.gatewayd", str(announce_write)],
                stdin=subprocess.PIPE, env=env, pass_fds=(announce_write,))
        except BaseException:
            os.close(announce_read)
            raise
        finally:
            os.close(announce_write)  # the child's copy is the only one: its exit ends the pipe
        try:
            self._send({"host": self.host, "port": self.port, "limits": asdict(self.limits)})
            announced = _read_announcement(announce_read, ANNOUNCE_SECONDS)
            if "port" not in announced:
                raise GatewayFailed(f"the gateway process failed: {announced.get('error')}",
                                    announced.get("errno"))
            self.port = int(announced["port"])
            self.functions_url = str(announced["functions_url"])
        except BaseException:
            self.kill()
            raise
        finally:
            os.close(announce_read)

    def configure(self, env: dict[str, str]) -> None:
        """Set the handlers' environment in the child (as the stack sets its own)."""
        self._send({"env": env})

    def ready(self) -> None:
        """From now on the child's `/health` answers 200."""
        self._send({"ready": True})

    async def stop(self) -> None:
        """Close every socket (1001), let each `$disconnect` run, and wait for the child to exit;
        SIGTERM after STOP_SECONDS, SIGKILL after KILL_SECONDS more."""
        await asyncio.to_thread(self.kill, graceful=True)

    def kill(self, graceful: bool = False) -> None:
        """End the child now (or, `graceful`, after a stop command), whatever state it is in."""
        process, self.process = self.process, None
        if process is None:
            return
        if graceful and process.poll() is None:
            try:
                self._write(process, {"stop": True})
                process.wait(timeout=STOP_SECONDS)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for sig, bound in ((signal.SIGTERM, KILL_SECONDS), (signal.SIGKILL, None)):
            if process.poll() is not None:
                break
            process.send_signal(sig)
            try:
                process.wait(timeout=bound)
            except subprocess.TimeoutExpired:
                continue
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass

    def _send(self, command: dict[str, Any]) -> None:
        assert self.process is not None, "start() first"
        self._write(self.process, command)

    @staticmethod
    def _write(process: subprocess.Popen, command: dict[str, Any]) -> None:
        assert process.stdin is not None
        process.stdin.write(json.dumps(command).encode() + b"\n")
        process.stdin.flush()


def _read_announcement(fd: int, timeout: float) -> dict[str, Any]:
    """The child's one JSON line, or an error once it exits or `timeout` passes without it."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise GatewayFailed(f"the gateway process did not announce its port within {timeout:g} s")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise GatewayFailed("the gateway process exited before announcing its port")
        data += chunk
    return json.loads(data)


# -- the child -----------------------------------------------------------------------------------

class Control:
    """The child's side of the command pipe: a thread that applies each command as it arrives."""

    def __init__(self, commands: IO[str], loop: asyncio.AbstractEventLoop):
        self.commands, self.loop = commands, loop
        self.ready = threading.Event()
        self.stop = asyncio.Event()

    def watch(self) -> None:
        for line in self.commands:
            command = json.loads(line)
            if "env" in command:
                os.environ.update(command["env"])
            if command.get("ready"):
                self.ready.set()
            if command.get("stop"):
                self.loop.call_soon_threadsafe(self.stop.set)
                return
        os._exit(1)  # the parent is gone without a stop: nothing may outlive it


async def serve(settings: dict[str, Any], control: Control, announce: IO[str]) -> None:
    from ripple.local.stack import local_functions, local_gateway

    gateway = local_gateway(port=settings["port"], host=settings["host"],
                            limits=Limits(**settings["limits"]), ready=control.ready.is_set)
    functions = local_functions()
    try:
        await gateway.start()
        await functions.start()
    except OSError as error:
        announce.write(json.dumps({"error": str(error), "errno": error.errno}) + "\n")
        announce.close()
        raise SystemExit(1) from error
    announce.write(json.dumps({"port": gateway.port, "functions_url": functions.url}) + "\n")
    announce.close()
    await control.stop.wait()
    await gateway.stop()
    await functions.stop()


def main(argv: list[str]) -> int:
    announce = os.fdopen(int(argv[0]), "w")
    settings = json.loads(sys.stdin.readline() or "null")
    if settings is None:
        return 1  # the parent died before it sent the settings
    loop = asyncio.new_event_loop()
    control = Control(sys.stdin, loop)
    threading.Thread(target=control.watch, name="ripple-gatewayd-control", daemon=True).start()
    try:
        loop.run_until_complete(serve(settings, control, announce))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops us
    sys.exit(main(sys.argv[1:]))

