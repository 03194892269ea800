"""The local stack's ports: the Supabase CLI's by default, each movable by an env var, and
probed before anything starts so that a busy port fails fast with the setting that moves it."""
from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass, fields

HOST = "127.0.0.1"
# Which env var moves which port (also what the error message names).
ENV = {"api": "RIPPLE_API_PORT", "db": "RIPPLE_DB_PORT", "inspector": "RIPPLE_INSPECTOR_PORT",
       "mail": "RIPPLE_MAIL_PORT", "aws": "RIPPLE_AWS_PORT"}


class PortInUse(RuntimeError):
    """A port the stack needs is taken; the message names the port and its setting."""

    def __init__(self, name: str, port: int, detail: str = "another program is listening on it"):
        self.name, self.port = name, port
        super().__init__(f"Port {port} ({ENV[name]}) is in use: {detail}. "
                         f"Stop that program, or start the stack on another port with "
                         f"{ENV[name]}=<port> make dev.")


@dataclass
class Ports:
    """Supabase CLI's ports; 0 picks a free one (tests). The Inspector is served only when
    given a port (`from_env` gives it 54323, as `make dev` wants)."""

    api: int = 54321
    db: int = 54322
    inspector: int | None = None
    mail: int = 54324
    aws: int = 54326

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ports:
        """The defaults, overridden by RIPPLE_API_PORT, RIPPLE_DB_PORT, … where set."""
        env = dict(os.environ if env is None else env)
        values: dict[str, int] = {"inspector": 54323}
        for f in fields(cls):
            raw = env.get(ENV[f.name], "").strip()
            if raw:
                if not raw.isdigit() or not 0 <= int(raw) <= 65535:
                    raise ValueError(f"{ENV[f.name]} must be a port number, not {raw!r}")
                values[f.name] = int(raw)
        return cls(**values)

    def busy(self, skip: tuple[str, ...] = ()) -> list[tuple[str, int]]:
        """The (name, port) pairs that cannot be bound right now, in declaration order."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)
                if f.name not in skip and getattr(self, f.name) and not bindable(getattr(self, f.name))]


def bindable(port: int, host: str = HOST) -> bool:
    """Whether a server could listen on host:port now (as the stack's servers bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As aiohttp and Postgres do: a socket left in TIME_WAIT does not block the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True
