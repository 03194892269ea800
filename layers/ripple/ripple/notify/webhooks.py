"""Delivery status webhooks: signed POSTs of the events ``notification_webhook_calls`` queues.

Each call carries ``Ripple-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>`` over
``"<t>.<body>"`` with the webhook's secret, so a receiver checks both who sent it and when
(refuse old timestamps to stop replays). A call that does not get a 2xx is retried with
backoff; after ``max_attempts`` it is left ``dead``::

    header = sign(secret, body, now)                      # "t=1767225600,v1=5f3c…"
    verify(secret, header, body, now, tolerance=300)      # True
    send_due(db, post=urllib_post, max_attempts=8)        # {"delivered": 2, "retried": 1, ...}
"""
from __future__ import annotations

import hashlib
import hmac
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from ripple import codec
from ripple.db import Database
from ripple.log import logger
from ripple.notify.errors import resend_after

# Leased for a minute while posting, so a concurrent sweep does not post the same call.
DUE = """
update public.notification_webhook_calls c set next_attempt_at = now() + interval '1 minute'
from public.notification_webhooks w
where w.id = c.webhook_id and c.id in (
  select x.id from public.notification_webhook_calls x
  where x.status = 'pending' and x.next_attempt_at <= now()
  order by x.next_attempt_at limit %s for update skip locked)
returning c.id, c.event, c.payload, c.attempts, w.url, w.secret
"""
DONE = """
update public.notification_webhook_calls
set status = %(status)s, attempts = attempts + 1, last_status = %(code)s, last_error = %(error)s,
    next_attempt_at = now() + %(retry_in)s::float8 * interval '1 second',
    delivered_at = case when %(status)s::text = 'delivered' then now() end
where id = %(id)s
"""
TIMEOUT_SECONDS = 3.0
# Posting time per invocation at most: the invocation's time belongs to the sends first.
BUDGET_SECONDS = 15.0
Post = Callable[[str, bytes, dict[str, str]], int]


def sign(secret: str, body: bytes, now: float) -> str:
    """The ``Ripple-Signature`` header for ``body`` sent at ``now`` (Unix seconds).

    >>> sign("whsec_0123456789abcdef", b'{"type":"delivery.sent"}', 1767225600)[:13]
    't=1767225600,'
    """
    stamp = int(now)
    mac = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, now: float, tolerance: float = 300) -> bool:
    """Whether ``header`` signs ``body`` with ``secret`` within ``tolerance`` seconds of ``now``.

    >>> body = b"{}"
    >>> verify("s" * 16, sign("s" * 16, body, 1000), body, now=1010)
    True
    >>> verify("s" * 16, sign("s" * 16, body, 1000), body, now=2000)
    False
    """
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        stamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now - stamp) > tolerance:
        return False
    expected = sign(secret, body, stamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def urllib_post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body``; the HTTP status (an error status too). Raises OSError when unreachable."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def send_due(db: Database, post: Post = urllib_post, max_attempts: int = 8,
             limit: int = 20, budget_seconds: float = BUDGET_SECONDS) -> dict[str, int]:
    """Post the calls that are due, for at most ``budget_seconds`` (what is left stays leased
    for a minute, then due again); counts of ``delivered``, ``retried`` and ``dead``."""
    counts = {"delivered": 0, "retried": 0, "dead": 0}
    started = time.monotonic()
    with db.transaction() as conn:
        due = db.execute(conn, DUE, (limit,))
    for call in due:
        if time.monotonic() - started > budget_seconds:
            break  # the invocation's time is the sends' first
        body = codec.dumps(call["payload"]).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "Ripple-Webhooks/1",
                   "Ripple-Event": call["event"], "Ripple-Webhook-Id": str(call["payload"]["id"]),
                   "Ripple-Signature": sign(call["secret"], body, time.time())}
        code, error = None, None
        try:
            code = post(call["url"], body, headers)
        except (OSError, ValueError) as exc:  # unreachable, refused, timed out, bad URL
            error = f"{type(exc).__name__}: {exc}"[:500]
        attempts = call["attempts"] + 1
        if code is not None and 200 <= code < 300:
            status, retry_in = "delivered", 0.0
        elif attempts >= max_attempts:
            status, retry_in = "dead", 0.0
            logger.error("webhook call dead", extra={"call_id": str(call["id"]), "url": call["url"],
                                                     "status": code, "error": error})
        else:
            status, retry_in = "pending", resend_after(attempts)
        with db.transaction() as conn:
            db.execute(conn, DONE, {"id": call["id"], "status": status, "code": code,
                                    "error": error or (None if code is None or code < 300
                                                       else f"HTTP {code}"),
                                    "retry_in": retry_in})
        counts["retried" if status == "pending" else status] += 1
    return counts
