"""The README's Quick start, client, broadcast/presence and notification code, run as pasted
against `make dev` (on free ports): from starting the stack to the first event."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ripple.local.ports import ENV
from tests.e2e.readme import (
    ROOT,
    Running,
    blocks,
    environment_after,
    node,
    python,
    quiet_port,
    shell,
    unmarked_blocks,
)

pytestmark = pytest.mark.e2e
JS_MODULES = ROOT / "tests" / "js" / "node_modules"


def test_every_block_of_the_tested_sections_is_run_by_this_file() -> None:
    assert unmarked_blocks() == []
    names = set(blocks())
    assert {"dev", "schema", "token", "js-subscriber", "py-subscriber", "insert", "explain",
            "js-room", "py-room", "notify", "js-ws", "notify-rules", "js-badge",
            "notify-webhook"} <= names
    assert names - {"deploy-only"} <= RUN


RUN = {"dev", "schema", "token", "js-subscriber", "py-subscriber", "insert", "explain", "js-room",
       "py-room", "notify", "js-ws", "notify-rules", "js-badge", "notify-webhook"}


@pytest.fixture(scope="module")
def terminal() -> Iterator[tuple[dict[str, str], Path]]:
    """`make dev` started from the README's block, and a second terminal's environment."""
    scratch = Path(tempfile.mkdtemp(prefix="ripple-readme-"))
    state = scratch / ".ripple"
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("RIPPLE_", "SUPABASE_"))}
    environ["RIPPLE_STATE_DIR"] = str(state)
    ports = {ENV[name]: str(quiet_port()) for name in ENV}
    language, code = blocks()["dev"]
    assert language == "sh"
    dev = Running(["bash", "-c", code], ROOT, {**environ, **ports})
    try:
        dev.wait_for("Ripple local stack is up", timeout=120)
        (scratch / "node_modules").symlink_to(JS_MODULES)
        yield environ, scratch
    finally:
        dev.stop()
        # Ctrl-C reaches make and the stack alike: make reports the signal, the stack stops cleanly.
        assert dev.proc.returncode in (0, -2), dev.output()
        assert "Stopping" in "\n".join(dev.output())
        assert "Warning" not in "\n".join(dev.output())
        left = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        assert str(state) not in left, "make dev left a process behind"
        shutil.rmtree(scratch, ignore_errors=True)


def save(scratch: Path, name: str, block: str) -> Path:
    path = scratch / name
    path.write_text(blocks()[block][1])
    return path


def test_quick_start_to_the_first_event(terminal) -> None:
    environ, scratch = terminal
    done = shell(blocks()["schema"][1], environ)
    assert done.returncode == 0, done.stderr
    assert "ALTER PUBLICATION" in done.stdout
    env = environment_after(blocks()["schema"][1].split("\n")[0] + "\n" + blocks()["token"][1], environ)
    assert env["USER_TOKEN"].count(".") == 2 and env["SUPABASE_URL"].startswith("http://127.0.0.1:")

    js = node(save(scratch, "todos.mjs", "js-subscriber"), env)
    py = python(save(scratch, "todos.py", "py-subscriber"), env)
    ws = node(save(scratch, "todos-ws.mjs", "js-ws"), env)  # the Node 20 `ws` transport
    try:
        js.wait_for("SUBSCRIBED")
        py.wait_for("SUBSCRIBED")
        ws.wait_for("SUBSCRIBED")
        done = shell(blocks()["insert"][1], env)
        assert done.returncode == 0, done.stderr
        assert "hello" in js.wait_for("INSERT")
        assert "hello" in py.wait_for("INSERT")
        assert "hello" in ws.wait_for("INSERT")
        # The other user's row, written in the same transaction, reached neither.
        assert not any("someone else" in line for line in js.output(settle=2) + py.output())

        explained = shell(blocks()["explain"][1], env)
        assert explained.returncode == 0, explained.stderr
        report = explained.stdout
        assert "INSERT on public.todos: 0 of 3 bindings receive it" in report, report  # js, py, ws
        assert report.count("filter   NO") == 3 and "may not read this row" in report, report
    finally:
        js.stop()
        ws.stop()
        py.stop()


def test_broadcast_and_presence_rooms(terminal) -> None:
    environ, scratch = terminal
    env = environment_after(blocks()["schema"][1].split("\n")[0], environ)
    room_js = save(scratch, "room.mjs", "js-room")
    ada = node(room_js, env, "ada")
    bea = None
    carol = None
    try:
        ada.wait_for("SUBSCRIBED")
        bea = node(room_js, env, "bea")
        bea.wait_for("SUBSCRIBED")
        ada.wait_for("online ada,bea")
        assert '"from":"bea"' in ada.wait_for("cursor")
        assert '"from":"ada"' in bea.wait_for("cursor")
        assert "sent ok" in ada.wait_for("sent")

        carol = python(save(scratch, "room.py", "py-room"), env, "carol")
        carol.wait_for("SUBSCRIBED")
        ada.wait_for("online ada,bea,carol")
        assert "'from': " in carol.wait_for("cursor")
        assert '"from":"carol"' in "\n".join(ada.seen[-20:]) or '"from":"carol"' in ada.wait_for('"from":"carol"')

        bea.stop()
        ada.wait_for("online ada,carol")
    finally:
        for room in (ada, bea, carol):
            if room is not None:
                room.stop()


def test_notifications_send_one(terminal) -> None:
    environ, _ = terminal
    env = environment_after(blocks()["schema"][1].split("\n")[0], environ)
    done = shell(blocks()["notify"][1], env)
    assert done.returncode == 0, done.stderr
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(env["RIPPLE_MAIL_URL"] + "/api/messages?to=ada@example.test") as r:
            messages = json.load(r)
        if messages or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [m["subject"] for m in messages] == ["Paid"], messages


def test_notification_rules_badge_and_webhook_blocks(terminal) -> None:
    environ, scratch = terminal
    env = environment_after(blocks()["schema"][1].split("\n")[0] + "\n" + blocks()["token"][1],
                            environ)
    done = shell(blocks()["notify"][1], env)  # Ada's profile, whom the rules block notifies
    assert done.returncode == 0, done.stderr
    done = shell(blocks()["notify-rules"][1], env)
    assert done.returncode == 0, done.stderr
    assert "notifications | deliveries" in done.stdout and "COMMIT" in done.stdout, done.stdout
    done = shell(blocks()["notify-webhook"][1], env)
    assert done.returncode == 0, done.stderr
    badge = node(save(scratch, "badge.mjs", "js-badge"), env)
    try:
        badge.wait_for("SUBSCRIBED")
        done = shell("make psql <<SQL\ninsert into profiles (id, full_name, email) values "
                     "('$USER_ID', 'Me', 'me@example.test') on conflict (id) do nothing;\n"
                     "insert into notifications (user_id, type, title, message, delivery_method) "
                     "values ('$USER_ID', 'hello', 'Hi', 'there', '{in_app,email}');\nSQL", env)
        assert done.returncode == 0, done.stderr
        assert "unseen 1 unread 1" in badge.wait_for("unseen")
    finally:
        badge.stop()
    deadline = time.monotonic() + 30
    while True:
        with urllib.request.urlopen(env["RIPPLE_MAIL_URL"] + "/api/webhooks?name=readme") as r:
            calls = json.load(r)
        if calls or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert calls and calls[-1]["headers"]["Ripple-Event"] == "delivery.sent", calls


def test_make_demo_loads_the_school_crm_into_the_running_stack(terminal) -> None:
    environ, _ = terminal
    done = subprocess.run(["make", "-s", "demo"], cwd=ROOT, env=environ, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    env = environment_after(blocks()["schema"][1].split("\n")[0], environ)
    assert f"{env['RIPPLE_INSPECTOR_URL']}/demo/?user=ada" in done.stdout
    with urllib.request.urlopen(env["RIPPLE_INSPECTOR_URL"] + "/demo/") as page:
        assert b"/vendor/supabase.js" in page.read()
    with urllib.request.urlopen(env["RIPPLE_INSPECTOR_URL"] + "/vendor/supabase.js") as bundle:
        assert b"createClient" in bundle.read()
    rows = shell("make psql <<'SQL'\nselect count(*) as students from students;\nSQL", environ)
    assert rows.returncode == 0 and " 4\n" in rows.stdout, rows.stdout
