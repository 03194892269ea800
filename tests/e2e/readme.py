"""The README's code blocks, by the name of the `<!-- readme-test: NAME -->` marker before each,
and processes that run them as a reader would: shell blocks with bash from the repository,
JavaScript with node and Python with the virtualenv, from a directory of their own."""
from __future__ import annotations

import os
import queue
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from ripple.local.ports import bindable

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"<!-- readme-test: ([\w-]+) -->\n```(\w+)\n(.*?)\n```", re.S)
FENCE = re.compile(r"^```(\w+)\n", re.M)
TESTED_SECTIONS = ("Quick start", "Client configuration", "Broadcast and presence", "Notifications")


def blocks(text: str | None = None) -> dict[str, tuple[str, str]]:
    """name → (language, code) of every marked block."""
    return {m.group(1): (m.group(2), m.group(3) + "\n") for m in MARKER.finditer(text or README.read_text())}


def unmarked_blocks(text: str | None = None) -> list[str]:
    """Fenced code blocks in the tested sections that carry no marker (so would go untested)."""
    text = text or README.read_text()
    missing = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title = section.split("\n", 1)[0].strip()
        if title not in TESTED_SECTIONS:
            continue
        for fence in FENCE.finditer(section):
            before = section[:fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
            if not before.startswith("<!-- readme-test:"):
                missing.append(f"{title}: {section[fence.start():fence.start() + 60]!r}")
    return missing


class Running:
    """A long-running block (a subscriber); `wait_for(text)` reads its output lines."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        for line in self.seen:
            if text in line:
                return line
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} from {self.proc.args}; output so far: {self.seen}")

    def output(self, settle: float = 0.0) -> list[str]:
        time.sleep(settle)
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return self.seen

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def quiet_port() -> int:
    """A free port below Linux's ephemeral range (32768+), so no client socket lands on it
    between the moment it is picked and the moment the stack binds it."""
    while True:
        port = random.randint(20000, 32000)
        if bindable(port):
            return port


def shell(code: str, env: dict[str, str], *, then: str = "") -> subprocess.CompletedProcess:
    """A shell block run from the repository, stopping at its first failing command."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", code + then], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def environment_after(code: str, env: dict[str, str]) -> dict[str, str]:
    """The shell's environment once `code` has run in it (what the next command in that terminal sees)."""
    done = shell(code, env, then="\nenv -0")
    assert done.returncode == 0, done.stderr
    pairs = (item.split("=", 1) for item in done.stdout.split("\0") if "=" in item)
    return dict(pairs)


def node(path: Path, env: dict[str, str], *args: str) -> Running:
    return Running(["node", "--experimental-websocket", "--no-warnings", path.name, *args], path.parent, env)


def python(path: Path, env: dict[str, str], *args: str) -> Running:
    return Running([sys.executable, path.name, *args], path.parent, env)
