"""A local mailbox: the email and SMS that Ripple sent through moto, as JSON and as a web page.

    mailbox = Mailbox(port=0)
    await mailbox.start()
    # open mailbox.url, or GET f"{mailbox.url}/api/messages?channel=email&to=ada@example.com"
    await mailbox.stop()

Routes: `GET /` (the page, refreshing itself), `GET /api/messages` (newest first, optional
`to` and `channel` filters), `DELETE /api/messages` (forget everything sent), `GET /health`.

The mailbox reads moto's in-process stores, so moto must run in this process, as the local
stack's `MotoServer` (`local/aws.py`) does. What moto keeps, and so what the mailbox can show:
- SESv2 `Content.Simple`: sender, destinations, subject and one body: the HTML part when there
  is one, else the text part. The other part, `Headers` and `ConfigurationSetName` are dropped,
  so an HTML email has `text: null` and `headers: {}`.
- SESv2 `Content.Raw`: the whole MIME message, so both parts and every header.
- SNS `Publish` to a phone number: the number and the body; message attributes are dropped.
- No send time. The mailbox swaps moto's two message stores for ones that note when each item
  arrives; anything already stored when the mailbox starts gets its start time.
"""
from __future__ import annotations

import email
import email.message
import email.policy
import html
import itertools
import logging
import math
import re
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import Message, RawMessage, ses_backends
from moto.sns.models import sns_backends

from ripple import codec
from ripple.local.http import serve

logger = logging.getLogger("ripple.local.mailbox")

CHANNELS = ("email", "sms")
REFRESH_SECONDS = 3

# moto keeps only one body of a Simple email; this tells which one it kept.
_HTML_TAG = re.compile(
    r"<\s*/?\s*(!doctype|html|head|body|div|p|br|table|td|a|span|img|h[1-6]|ul|ol|li|strong|em|b|i"
    r"|center|font|style)\b", re.IGNORECASE)
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ"
            " !\"#¤%&'()*+,-./0123456789:;<=>?¡"
            "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = set("^{}\\[~]|€\f")
_order = itertools.count()


def _stamp() -> tuple[int, int]:
    """(arrival order, epoch milliseconds)."""
    return next(_order), time.time_ns() // 1_000_000


class _StampedList(list):
    """moto's SES `sent_messages`, noting when each message is appended."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        self.stamps: dict[int, tuple[int, int]] = {}
        for item in items:
            self.append(item)

    def append(self, item: Any) -> None:
        self.stamps[id(item)] = _stamp()
        super().append(item)

    def clear(self) -> None:
        super().clear()
        self.stamps.clear()


class _StampedDict(OrderedDict):
    """moto's SNS `sms_messages` ({message id: (number, body)}), noting when each is stored."""

    def __init__(self, items: Any = ()) -> None:
        super().__init__()
        self.stamps: dict[str, tuple[int, int]] = {}
        for key, value in dict(items).items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        self.stamps[key] = _stamp()
        super().__setitem__(key, value)

    def clear(self) -> None:
        super().clear()
        self.stamps.clear()


def _stamped(backend: Any, name: str, kind: type) -> Any:
    store = getattr(backend, name)
    if not isinstance(store, kind):
        store = kind(store)
        setattr(backend, name, store)
    return store


def _iso(epoch_ms: int) -> str:
    at = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sms_segments(body: str) -> int:
    """How many SMS parts `body` takes: GSM-7 when every character has a GSM-7 code, else UCS-2."""
    if set(body) <= _GSM7 | _GSM7_EXTENDED:
        units = len(body) + sum(ch in _GSM7_EXTENDED for ch in body)
        single, part = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else math.ceil(units / part)


def _part(mime: email.message.EmailMessage, subtype: str) -> str | None:
    """The decoded text/`subtype` body of a MIME message; the raw payload if it cannot decode."""
    part = mime.get_body((subtype,))
    if part is None:
        return None
    try:
        return part.get_content()
    except (LookupError, ValueError):
        return str(part.get_payload())


def _email_entry(item: Any, stamp: tuple[int, int]) -> dict | None:
    if isinstance(item, Message):
        recipients = [a for addresses in item.destinations.values() for a in addresses]
        to = item.destinations.get("ToAddresses") or recipients
        is_html = bool(_HTML_TAG.search(item.body or ""))
        fields: dict[str, Any] = {"from": item.source, "to": ", ".join(to), "subject": item.subject,
                  "html": item.body if is_html else None, "text": None if is_html else item.body,
                  "headers": {}}
    elif isinstance(item, RawMessage):
        mime = email.message_from_string(item.raw_data, policy=email.policy.default)
        recipients = list(item.destinations)
        fields = {"from": str(mime["From"] or item.source or ""),
                  "to": str(mime["To"] or ", ".join(recipients)),
                  "subject": None if mime["Subject"] is None else str(mime["Subject"]),
                  "html": _part(mime, "html"), "text": _part(mime, "plain"),
                  "headers": {name: str(value) for name, value in mime.items()}}
    else:
        return None  # templated sends: moto keeps the template name, not what it rendered
    addresses = sorted({address.lower() for _, address in getaddresses(recipients) if address})
    return {"id": item.id, "channel": "email", **fields, "segments": None,
            "created_at": _iso(stamp[1]), "recipients": addresses}


def _sms_entry(message_id: str, number: str, body: str, stamp: tuple[int, int]) -> dict:
    return {"id": message_id, "channel": "sms", "from": None, "to": number, "subject": None,
            "html": None, "text": body, "headers": {}, "segments": sms_segments(body),
            "created_at": _iso(stamp[1]), "recipients": [number]}


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _sent_to(entry: dict, to: str) -> bool:
    """Emails match on any recipient address (case-insensitive); SMS on the number's digits,
    so `?to=+15550100` works even though a bare `+` in a query string reads as a space."""
    if entry["channel"] == "email":
        return parseaddr(to)[1].lower() in entry["recipients"]
    return bool(_digits(to)) and _digits(to) == _digits(entry["to"])


class Mailbox:
    """The aiohttp server behind the mailbox page; one moto account and region."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 54324,
                 account_id: str = DEFAULT_ACCOUNT_ID, region: str = "us-east-1") -> None:
        self.host = host
        self.port = port
        self.account_id = account_id
        self.region = region
        self.app = web.Application()
        self.app.router.add_get("/", self._page)
        self.app.router.add_get("/api/messages", self._list)
        self.app.router.add_delete("/api/messages", self._clear)
        self.app.router.add_get("/health", self._health)
        # A webhook receiver for local development: point a notification_webhooks row here.
        self.app.router.add_post("/webhooks/{name}", self._receive)
        self.app.router.add_get("/api/webhooks", self._webhooks)
        self.webhook_calls: list[dict] = []
        self._failures: dict[str, int] = {}
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        """The page's address, e.g. "http://127.0.0.1:54324"."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Start noting send times, bind and serve; with port 0 the OS picks a free port."""
        self._stores()
        self._runner, self.port = await serve(self.app, self.host, self.port)
        logger.info("mailbox listening on %s", self.url)

    async def stop(self) -> None:
        """Stop serving; what moto stored stays there."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def messages(self, *, to: str | None = None, channel: str | None = None) -> list[dict]:
        """Everything sent so far, newest first, optionally only to `to` or on `channel`."""
        emails, sms = self._stores()
        # Each store stamps an item before storing it, so every item listed here has a stamp.
        entries = [(emails.stamps[id(item)], item) for item in list(emails)]
        entries = [(stamp, _email_entry(item, stamp)) for stamp, item in entries]
        for message_id, (number, body) in list(sms.items()):
            stamp = sms.stamps[message_id]
            entries.append((stamp, _sms_entry(message_id, number, body, stamp)))
        entries.sort(key=lambda pair: pair[0], reverse=True)
        return [{k: v for k, v in entry.items() if k != "recipients"}
                for _, entry in entries
                if entry is not None
                and (channel is None or entry["channel"] == channel)
                and (to is None or _sent_to(entry, to))]

    def clear(self) -> None:
        """Forget every sent email and SMS, in moto too."""
        emails, sms = self._stores()
        emails.clear()
        sms.clear()
        sns_backends[self.account_id][self.region].sms_message_objects.clear()

    def _stores(self) -> tuple[_StampedList, _StampedDict]:
        # Looked up on every call: moto's reset endpoint replaces the backends.
        ses = ses_backends[self.account_id][self.region]
        sns = sns_backends[self.account_id][self.region]
        return (_stamped(ses, "sent_messages", _StampedList),
                _stamped(sns, "sms_messages", _StampedDict))

    def _filters(self, request: web.Request) -> dict:
        channel = request.query.get("channel") or None
        if channel is not None and channel not in CHANNELS:
            raise web.HTTPBadRequest(text=codec.dumps({"message": "channel must be email or sms"}),
                                     content_type="application/json")
        return {"to": request.query.get("to") or None, "channel": channel}

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response(self.messages(**self._filters(request)), dumps=codec.dumps)

    async def _clear(self, request: web.Request) -> web.Response:
        self.clear()
        return web.Response(status=204)

    async def _receive(self, request: web.Request) -> web.Response:
        """Record a webhook call; ``?fail=N`` answers 500 to the first N calls to this name,
        so retries can be watched."""
        name = request.match_info["name"]
        failing = int(request.query.get("fail", "0") or 0)
        seen = self._failures.get(name, 0)
        self._failures[name] = seen + 1
        status = 500 if seen < failing else 204
        self.webhook_calls.insert(0, {
            "name": name, "status": status, "received_at": _iso(time.time_ns() // 1_000_000),
            "headers": {k: v for k, v in request.headers.items() if k.lower().startswith("ripple-")},
            "body": (await request.read()).decode("utf-8", errors="replace")})
        return web.Response(status=status)

    async def _webhooks(self, request: web.Request) -> web.Response:
        name = request.query.get("name")
        calls = [c for c in self.webhook_calls if name is None or c["name"] == name]
        return web.json_response(calls, dumps=codec.dumps)

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _page(self, request: web.Request) -> web.Response:
        filters = self._filters(request)
        nonce = secrets.token_urlsafe(16)
        # The email iframes inherit this policy: no script, nothing fetched beyond data: images.
        policy = (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                  f"script-src 'nonce-{nonce}'; connect-src 'self'; base-uri 'none'; "
                  "form-action 'none'")
        return web.Response(
            text=render_page(self.messages(**filters), nonce=nonce,
                             webhooks=self.webhook_calls, **filters),
            content_type="text/html",
            headers={"Content-Security-Policy": policy, "Cache-Control": "no-store"})


def render_page(messages: list[dict], *, nonce: str, to: str | None = None,
                channel: str | None = None, webhooks: list[dict] | None = None) -> str:
    """The mailbox page for `messages` (as `Mailbox.messages` returns them), every value escaped."""
    e = html.escape
    tabs = "".join(
        f'<a href="?{e(urlencode({k: v for k, v in (("channel", value), ("to", to)) if v}))}"'
        f'{" class=on" if channel == value else ""}>{label}</a>'
        for value, label in ((None, "All"), ("email", "Email"), ("sms", "SMS")))
    shown = f" to {e(to)}" if to else ""
    cards = "".join(_card(m) for m in messages) or (
        '<p class="empty">Nothing sent yet. Email sent through SES and SMS sent through SNS '
        "show up here.</p>")
    newest = e(messages[0]["id"]) if messages else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Ripple mailbox</title>
<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript>
<style>{_CSS}</style></head>
<body data-count="{len(messages)}" data-newest="{newest}">
<header><h1>Ripple mailbox</h1><nav>{tabs}</nav>
<span class="count">{len(messages)} message{"" if len(messages) == 1 else "s"}{shown}</span>
<button id="clear" type="button">Clear all</button></header>
<main>{cards}{_webhook_section(webhooks or [])}</main>
<script nonce="{nonce}">{_SCRIPT}</script>
</body></html>"""


def _webhook_section(calls: list[dict]) -> str:
    if not calls:
        return ""
    e = html.escape
    rows = "".join(
        f'<tr><td>{e(c["received_at"][:19].replace("T", " "))}</td><td>{e(c["name"])}</td>'
        f'<td>{e(c["headers"].get("Ripple-Event", ""))}</td><td>{c["status"]}</td>'
        f'<td><pre>{e(c["body"])}</pre></td></tr>' for c in calls)
    return (f'<section class="webhooks"><h2>Webhook calls ({len(calls)})</h2><table>'
            "<tr><th>Received</th><th>Endpoint</th><th>Event</th><th>Answered</th><th>Body</th>"
            f"</tr>{rows}</table></section>")


def _card(m: dict) -> str:
    e = html.escape
    shown = m["created_at"].replace("T", " ")[:19]
    time_ = f'<time datetime="{e(m["created_at"])}">{e(shown)} UTC</time>'
    if m["channel"] == "sms":
        body = m["text"] or ""
        return (f'<article class="sms"><div class="top"><span class="badge">SMS</span>'
                f'<h2>{e(m["to"])}</h2>{time_}</div>'
                f'<p class="sms-body">{e(body)}</p>'
                f'<p class="note">{len(body)} characters · {m["segments"]} segment'
                f'{"" if m["segments"] == 1 else "s"}</p></article>')
    parts = [f'<article class="email"><div class="top"><span class="badge">Email</span>'
             f'<h2>{e(m["subject"] or "(no subject)")}</h2>{time_}</div>'
             f'<dl><dt>From</dt><dd>{e(m["from"] or "")}</dd><dt>To</dt><dd>{e(m["to"])}</dd></dl>']
    if m["html"] is not None:
        parts.append(f'<iframe sandbox="" srcdoc="{e(m["html"], quote=True)}" '
                     f'title="HTML part" loading="lazy"></iframe>')
    if m["text"] is not None:
        parts.append(f'<details open><summary>Text part</summary><pre>{e(m["text"])}</pre>'
                     "</details>")
    elif m["html"] is not None:
        parts.append('<p class="note">No text part stored: moto keeps only the HTML part of a '
                     "Simple email.</p>")
    if m["headers"]:
        rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in m["headers"].items())
        parts.append(f"<details><summary>Headers</summary><table>{rows}</table></details>")
    parts.append("</article>")
    return "".join(parts)


_CSS = """
:root{color-scheme:light;--ink:#1d2330;--muted:#667085;--line:#e4e7ec;--bg:#f6f7f9;--accent:#3b5bdb}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--ink);
background:var(--bg)}
header{position:sticky;top:0;z-index:1;display:flex;align-items:center;gap:20px;padding:12px 28px;
background:#fff;border-bottom:1px solid var(--line)}
h1{font-size:18px;margin:0}
nav{display:flex;gap:4px}
nav a{padding:4px 12px;border-radius:999px;color:var(--muted);text-decoration:none}
nav a.on{background:var(--accent);color:#fff}
.count{color:var(--muted);margin-left:auto}
button{font:inherit;padding:5px 14px;border:1px solid var(--line);border-radius:6px;background:#fff;
cursor:pointer}
button:hover{border-color:#c4c9d2}
main{max-width:980px;margin:24px auto;padding:0 28px;display:flex;flex-direction:column;gap:16px}
article{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px}
.top{display:flex;align-items:baseline;gap:12px}
.top h2{font-size:16px;margin:0;flex:1;overflow-wrap:anywhere}
.top time{color:var(--muted);font-size:13px;white-space:nowrap}
.badge{font-size:11px;font-weight:600;letter-spacing:.04em;text-transform:uppercase;padding:2px 8px;
border-radius:4px;background:#e7ecfd;color:var(--accent)}
.sms .badge{background:#e3f6ec;color:#1b7f4b}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:10px 0;font-size:14px}
dt{color:var(--muted)}
dd{margin:0;overflow-wrap:anywhere}
iframe{width:100%;height:340px;border:1px solid var(--line);border-radius:6px;background:#fff;
resize:vertical;overflow:auto;display:block}
details{margin-top:10px}
summary{cursor:pointer;color:var(--muted);font-size:14px}
pre,.sms-body{white-space:pre-wrap;overflow-wrap:anywhere;
font:13px/1.5 ui-monospace,Menlo,Consolas,monospace;background:var(--bg);padding:10px 12px;
border-radius:6px;margin:8px 0 0}
.sms-body{font:15px/1.5 system-ui,sans-serif;background:#eef8f2;max-width:520px}
.note{color:var(--muted);font-size:13px;margin:8px 0 0}
table{border-collapse:collapse;font-size:13px;margin-top:8px}
th,td{text-align:left;vertical-align:top;padding:3px 10px 3px 0;overflow-wrap:anywhere}
th{color:var(--muted);font-weight:500;white-space:nowrap}
.empty{color:var(--muted);text-align:center;padding:60px 0}
"""

# Reload only when something changed, so reading a long email is not interrupted.
_SCRIPT = """
const state = document.body.dataset;
document.getElementById("clear").addEventListener("click", async () => {
  await fetch("/api/messages", {method: "DELETE"});
  location.reload();
});
setInterval(async () => {
  try {
    const response = await fetch("/api/messages" + location.search);
    if (!response.ok) return;
    const messages = await response.json();
    const newest = messages.length ? messages[0].id : "";
    if (String(messages.length) !== state.count || newest !== state.newest) location.reload();
  } catch (error) {}
}, REFRESH_MS);
""".replace("REFRESH_MS", str(REFRESH_SECONDS * 1000))
