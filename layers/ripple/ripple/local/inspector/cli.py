"""`make explain`: ask the running Inspector who would receive a change, and why.

    make explain TABLE=public.students WHERE='full_name=Leo Park' TYPE=UPDATE
    make explain TABLE=public.todos ROW='{"id": 1, "user_id": "…", "title": "hi"}'
    make explain ID=42          # a pending or recent outbox entry
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def read_env(path: Path) -> dict[str, str] | None:
    """The variables `make dev` wrote to `path`, or None (with a message) when it has not."""
    if not path.is_file():
        print(f"no {path}: start the stack with `make dev` first", file=sys.stderr)
        return None
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = shlex.split(value)[0] if value else ""
    return env


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    if args.outbox_id:
        return {"outbox_id": int(args.outbox_id)}
    schema, _, table = args.table.rpartition(".")
    body: dict[str, Any] = {"schema": schema or "public", "table": table, "type": args.type.upper()}
    if args.where:
        column, _, value = args.where.partition("=")
        body["where"] = {column.strip(): value}
    if args.row:
        body["record"] = json.loads(args.row)
    if args.old:
        body["old_record"] = json.loads(args.old)
    return body


def render(answer: dict[str, Any]) -> str:
    change = answer["change"]
    lines = [f"{change['type']} on {change['schema']}.{change['table']}: "
             f"{answer['receiving']} of {len(answer['subscribers'])} bindings receive it"]
    for s in answer["subscribers"]:
        mark = "✔" if s["receives"] else "✘"
        who = s["role"] + (f" sub={s['sub']}" if s["sub"] else "")
        lines.append(f"  {mark} {s['topic']} ({who}, connection {s['connection_id']}, "
                     f"binding {s['binding_id']}): {s['because']}")
        for name, check in s["checks"].items():
            state = {True: "ok", False: "NO", None: "—"}[check["ok"]]
            lines.append(f"      {name:<8} {state:<3} {check['detail']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make explain", description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", required=True)
    for flag in ("--table", "--where", "--row", "--old", "--outbox-id"):
        parser.add_argument(flag, default="")
    parser.add_argument("--type", default="INSERT")
    parser.add_argument("--json", action="store_true", help="print the JSON answer")
    args = parser.parse_args(argv)
    env = read_env(Path(args.env))
    if env is None:
        return 1
    if not args.table and not args.outbox_id:
        print("make explain: give TABLE=schema.table (with WHERE=col=value or ROW='{…}') or ID=<outbox id>",
              file=sys.stderr)
        return 2
    request = urllib.request.Request(env["RIPPLE_INSPECTOR_URL"] + "/api/explain",
                                     data=json.dumps(request_body(args)).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        print(f"make explain: {json.load(error).get('message')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as error:
        print(f"make explain: the Inspector is not answering ({error.reason}); is make dev running?",
              file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else render(answer))
    return 0


if __name__ == "__main__":
    sys.exit(main())
