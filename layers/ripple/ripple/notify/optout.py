"""The unsubscribe routes of the REST API: the page an email's link opens, and RFC 8058's
one-click POST (which the page's button sends too).

Following the link changes nothing — mail scanners and link previews fetch links on their
own — so only the POST records the opt-out, as a disabled preference written as service_role::

    app.include_router(optout.router)
"""
from __future__ import annotations

import datetime as dt
import html
from typing import Annotated, Literal
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Form, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from ripple.auth.jwt import _secret
from ripple.notify.caller import SERVICE, as_caller
from ripple.notify.exceptions import ApiError, InvalidToken
from ripple.notify.inbox import reply
from ripple.notify.schemas import ErrorBody, Unsubscribed
from ripple.notify.unsubscribe import UnsubscribeRequest, read_token

# Unsubscribe links keep working in year-old emails (CAN-SPAM asks for at least 30 days).
UNSUBSCRIBE_MAX_AGE = dt.timedelta(days=365)
UNSUBSCRIBE = """
insert into public.notification_preferences (user_id, type, channel, enabled)
values (%s, %s, %s, false)
on conflict (user_id, type, channel) do update set enabled = false
"""
ONE_CLICK_FORM = ("Bad Request: a one-click unsubscribe posts the form field "
                  "List-Unsubscribe=One-Click")
Token = Annotated[str | None, Query(description="The signed token of the unsubscribe link.")]


def _page(description: str) -> OpenAPIResponse:
    return OpenAPIResponse(description=description,
                           content={"text/html": {"schema": {"type": "string"}}})


router = Router()


# -- pure: texts and pages ----------------------------------------------------------------------
_CHANNEL_WORDS = {"email": "email", "sms": "SMS", "in_app": "in-app"}


def confirm_text(type: str, channel: str) -> str:
    """``Unsubscribe from <type> <channel> notifications?``; type ``*`` reads *all*."""
    what = "all" if type == "*" else type
    return f"Unsubscribe from {what} {_CHANNEL_WORDS.get(channel, channel)} notifications?"


def unsubscribed_text(type: str, channel: str) -> str:
    """``You are unsubscribed from <type> <channel> notifications.``; type ``*`` reads *all*."""
    what = "all" if type == "*" else type
    return f"You are unsubscribed from {what} {_CHANNEL_WORDS.get(channel, channel)} notifications."


def html_page(status: int, title: str, text: str, button: tuple[str, str] | None = None) -> Response:
    """A minimal HTML response; ``title`` and ``text`` are escaped. ``button`` is an optional
    (label, query string) pair: a form posting ``List-Unsubscribe=One-Click`` to this same path."""
    form = ""
    if button is not None:
        label, query = button
        form = (f"<form method=\"post\" action=\"?{html.escape(query)}\">"
                "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
                f"<button type=\"submit\">{html.escape(label)}</button></form>")
    body = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex\">"
            f"<title>{html.escape(title)}</title></head>"
            f"<body><main><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</main>"
            "</body></html>")
    return Response(status_code=status, body=body,
                    headers={"content-type": "text/html; charset=utf-8", "cache-control": "no-store",
                             "content-security-policy": "default-src 'none'"})


def invalid_link(exc: InvalidToken) -> Response:
    """The 400 page for a link that cannot be used."""
    return html_page(400, "Unsubscribe link not valid",
                     f"This unsubscribe link cannot be used: {exc}.")


def read(token: str | None) -> UnsubscribeRequest:
    """The opt-out ``token`` asks for; InvalidToken if it is missing, bad or expired."""
    if not token:
        raise InvalidToken("the link has no token")
    return read_token(token, _secret(), max_age_seconds=UNSUBSCRIBE_MAX_AGE.total_seconds())


# -- routes -------------------------------------------------------------------------------------
@router.get("/api/unsubscribe", operation_id="unsubscribe",
            summary="Follow an email's unsubscribe link: a page asking to confirm the opt-out "
                    "(following the link alone changes nothing)",
            responses={200: _page("Confirmation page"),
                       400: _page("Missing, invalid or expired token")})
def unsubscribe_page(token: Token = None):  # HTML: no model to validate the answer with
    """200 HTML asking to confirm the opt-out; 400 HTML for a missing, bad or expired token."""
    try:
        request = read(token)
    except InvalidToken as exc:
        return invalid_link(exc)
    return html_page(200, "Unsubscribe", confirm_text(request.type, request.channel),
                     button=("Unsubscribe", urlencode({"token": token})))


@router.post("/api/unsubscribe", operation_id="unsubscribeOneClick",
             summary="RFC 8058 one-click unsubscribe, as mailbox providers post it (and the "
                     "confirmation page's button, answered in HTML when the request accepts it)",
             responses={200: reply("The recorded opt-out", Unsubscribed),
                        400: reply("Missing, invalid or expired token, or not the one-click "
                                   "form", ErrorBody)})
def unsubscribe_one_click(
        list_unsubscribe: Annotated[Literal["One-Click"], Form(alias="List-Unsubscribe")],
        token: Token = None):  # a model or a page: documented under `responses`
    """200 ``Unsubscribed`` for RFC 8058's ``List-Unsubscribe=One-Click`` POST; the confirmation
    page's button (a request accepting HTML) gets a page instead."""
    browser = "text/html" in (router.current_event.headers.get("accept") or "")
    try:
        request = read(token)
    except InvalidToken as exc:
        if browser:
            return invalid_link(exc)
        raise ApiError(400, f"Bad Request: {exc}") from None
    as_caller(SERVICE, lambda run: run(UNSUBSCRIBE, (request.user_id, request.type,
                                                     request.channel)))
    if browser:
        return html_page(200, "Unsubscribed", unsubscribed_text(request.type, request.channel))
    return Unsubscribed(type=request.type, channel=request.channel).model_dump()
