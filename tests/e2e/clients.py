"""Drive the real client libraries from tests: realtime-py in-process, supabase-js under node."""
from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).resolve().parents[1] / "js"
# The supabase-js releases under test (tests/js/package.json): the current one and the oldest the
# README supports. The `supabase_js` fixture runs a test once with each.
SUPABASE_JS = {"current": "@supabase/supabase-js", "oldest": "supabase-js-oldest"}


def _node(script: str, args: list[str], client: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        ["node", "--experimental-websocket", "--no-warnings", str(JS_DIR / script), *args],
        cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {}), "SUPABASE_JS": SUPABASE_JS[client]})


class JsListener:
    """supabase-js subscribed to postgres_changes; `events()` yields what its callbacks received."""

    def __init__(self, api_url: str, key: str, bindings: list[dict], *, vsn: str = "default",
                 channel: str = "js-feed", user_jwt: str | None = None, config: dict | None = None,
                 client: str = "current"):
        self._start(_node("listen.mjs", [api_url, key, vsn, channel, json.dumps(bindings),
                                         *([user_jwt] if user_jwt else [])], client,
                          {"RIPPLE_CHANNEL_CONFIG": json.dumps(config or {})}))

    def _start(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: queue.Queue[dict] = queue.Queue()
        self.skipped: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()
        # The script's first line names the supabase-js release it loaded.
        self.version: str = self.wait_for("client")["version"]

    def _read(self) -> None:
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float = 20.0, **match: Any) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} {match} from supabase-js; stderr: {self._stderr()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line["kind"] == kind and all(line.get(k) == v for k, v in match.items()):
                return line
            if line["kind"] == "status" and line["status"] in ("CHANNEL_ERROR", "TIMED_OUT"):
                raise AssertionError(f"supabase-js channel failed: {line}")
            self.skipped.append(line)

    def changes(self, count: int, timeout: float = 20.0) -> list[dict]:
        return [self.wait_for("change", timeout) for _ in range(count)]

    def set_auth(self, token: str) -> None:
        """Hand the client a new user token (supabase-js then sends `access_token` to its channels)."""
        self.proc.stdin.write(json.dumps({"op": "setAuth", "token": token}) + "\n")
        self.proc.stdin.flush()
        self.wait_for("auth")

    def quiet(self, seconds: float) -> list[dict]:
        """Lines that arrive within `seconds` (used to prove nothing else was delivered)."""
        time.sleep(seconds)
        out = []
        while not self.lines.empty():
            out.append(self.lines.get_nowait())
        return out

    def _stderr(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class JsRoom(JsListener):
    """supabase-js in a broadcast/presence room; `do()` sends it a command."""

    def __init__(self, api_url: str, key: str, room: str, config: dict, *, vsn: str = "1.0.0",
                 client: str = "current"):
        self._start(_node("room.mjs", [api_url, key, vsn, room, json.dumps(config)], client))

    def do(self, **command: Any) -> None:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()


class JsTopic(JsListener):
    """supabase-js signed in as a user on a private channel, listening for the broadcasts
    `realtime.broadcast_changes` sends (INSERT, UPDATE, DELETE), as Supabase's guide has it."""

    def __init__(self, api_url: str, anon_key: str, topic: str, user_jwt: str, *, client: str = "current"):
        self._start(_node("topic.mjs", [api_url, anon_key, topic, user_jwt], client))


class JsReplay(JsListener):
    """supabase-js on one broadcast channel with `config` (e.g. a replay); reports broadcast and
    system messages and the subscribe status (tests/js/replay.mjs)."""

    def __init__(self, api_url: str, key: str, channel: str, config: dict, *, user_jwt: str | None = None,
                 client: str = "current"):
        self._start(_node("replay.mjs", [api_url, key, channel, *([user_jwt] if user_jwt else [])], client,
                          {"RIPPLE_CHANNEL_CONFIG": json.dumps(config)}))


class PyListener:
    """realtime-py (the `realtime` package) subscribed to postgres_changes, on its own loop thread."""

    def __init__(self, api_url: str, key: str, bindings: list[dict], channel: str = "py-feed"):
        from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

        self.events: queue.Queue[tuple[int, dict]] = queue.Queue()
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.status: queue.Queue = queue.Queue()

        async def start():
            self.client = AsyncRealtimeClient(f"{api_url}/realtime/v1", token=key, auto_reconnect=False)
            await self.client.connect()
            ch = self.client.channel(channel)
            for index, b in enumerate(bindings):
                ch.on_postgres_changes(b["event"], table=b.get("table"), schema=b.get("schema"),
                                       filter=b.get("filter"),
                                       callback=lambda payload, i=index: self.events.put((i, payload)))
            ch.on_system(lambda payload: self.status.put(("system", payload)))

            def on_state(state, err):
                self.status.put((state, err))

            await ch.subscribe(on_state)
            self.channel = ch

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=20)
        state, err = self.status.get(timeout=20)
        if state != RealtimeSubscribeStates.SUBSCRIBED:
            raise AssertionError(f"realtime-py did not subscribe: {state} {err}")

    def changes(self, count: int, timeout: float = 20.0) -> list[tuple[int, dict]]:
        return [self.events.get(timeout=timeout) for _ in range(count)]

    def quiet(self, seconds: float) -> list:
        time.sleep(seconds)
        out = []
        while not self.events.empty():
            out.append(self.events.get_nowait())
        return out

    def close(self) -> None:
        async def stop():
            await self.client.close()

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
