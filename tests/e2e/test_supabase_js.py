"""The supabase-js releases under test are the ones the README names, each with its own realtime-js."""
from __future__ import annotations

import json

from tests.e2e.clients import JS_DIR, SUPABASE_JS, JsRoom


def test_the_current_and_the_oldest_supported_release_are_both_installed(stack):
    lock = json.loads((JS_DIR / "package-lock.json").read_text())["packages"]
    loaded = {}
    for client in SUPABASE_JS:
        room = JsRoom(stack.api_url, stack.key("anon"), "releases", {}, client=client)
        try:
            room.wait_for("status", status="SUBSCRIBED")
            loaded[client] = room.version
        finally:
            room.close()
    assert loaded == {"current": lock["node_modules/@supabase/supabase-js"]["version"], "oldest": "2.109.0"}
    assert lock["node_modules/supabase-js-oldest"]["version"] == "2.109.0"
    # The oldest brings its own realtime-js rather than sharing the current one's.
    assert lock["node_modules/supabase-js-oldest/node_modules/@supabase/realtime-js"]["version"] == "2.109.0"
    assert lock["node_modules/@supabase/realtime-js"]["version"] == loaded["current"]
