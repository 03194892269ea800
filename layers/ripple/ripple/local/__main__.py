"""`make dev`: run the local stack in the foreground until Ctrl-C."""
from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from ripple.local.stack import ROOT, Ports, Stack


def main() -> None:
    stack = Stack(state_dir=Path(os.environ.get("RIPPLE_STATE_DIR", ROOT / ".ripple")),
                  ports=Ports(), db_url=os.environ.get("RIPPLE_DB_URL") or None).start()
    print(f"""
Ripple local stack is up.

  WebSocket      {stack.ws_url}
  API URL        {stack.api_url}          (supabase-js: createClient(API URL, anon key))
  DB URL         {stack.db_url}
  Mailbox        {stack.mail_url}          (email and SMS the stack has sent)
  AWS (moto)     {stack.aws_url}
  JWT secret     {stack.jwt_secret}
  anon key       {stack.key('anon')}
  service_role   {stack.key('service_role')}

Health: {stack.api_url}/health   Stop: Ctrl-C
""", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: done.set())
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    stack.stop()


if __name__ == "__main__":
    main()
