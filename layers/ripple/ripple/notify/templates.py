"""Rendering notifications as email and SMS with Jinja2 templates, per type, channel, locale.

Templates are files named ``<type>/<channel>.<locale>.<ext>``:

=========  ===========================================================================
email      ``email.<locale>.subject.txt``, ``email.<locale>.html``, ``email.<locale>.txt``
sms        ``sms.<locale>.txt``
=========  ===========================================================================

Each part is looked up on its own, first match wins, in this order (locale ``pt-BR``)::

    <type>/email.pt-BR.html   <type>/email.pt.html   <type>/email.en.html
    default/email.pt-BR.html  default/email.pt.html  default/email.en.html

and each name is looked up in the application's directories first, then in the templates
shipped here (``default/`` in English, an ``enrollment.created/`` example, and the
``layout/email.html`` both extend). So an application can override a single part — just the
subject of one type, say — or re-skin everything by replacing ``layout/email.html``.

A digest (two or more notifications sent as one) renders ``email-digest.<locale>.*`` and
``sms-digest.<locale>.txt`` instead, which also see ``events`` (each like ``notification``,
plus ``created_at``, oldest first), ``count``, ``first`` and ``last``; ``notification`` is the
newest.

Templates see three variables, and nothing else (a missing one is an error, not a blank):

- ``notification``: ``type``, ``title``, ``message``, ``data``, ``action_url``, ``priority``;
- ``recipient``: ``full_name`` (may be None), ``locale``;
- ``unsubscribe_url``: a one-click URL, or None for messages the user cannot opt out of.

They run in Jinja2's immutable sandbox: application templates cannot reach Python internals
or alter ``notification.data``, which every recipient shares. HTML templates (``.html``) are
autoescaped; text templates are not, since plain text has nothing to escape.

Typical use, once per container::

    templates = Templates(["/opt/app/templates"])
    email = templates.email(notification, recipient, unsubscribe_url=url)  # RenderedEmail
    text = templates.sms(notification, recipient)                         # RenderedSms
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ripple.notify.exceptions import TemplateError
from ripple.notify.models import Notification, Recipient, RenderedEmail, RenderedSms

BUILTIN_DIR = Path(__file__).parent / "templates"
FALLBACK_LOCALE = "en"
DEFAULT_TYPE = "default"

_TYPE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_SUBTAG = re.compile(r"[A-Za-z0-9]{1,8}")


class Templates:
    """The templates of one deployment: application directories first, then the built-ins."""

    def __init__(self, directories: Sequence[str | os.PathLike[str]] = (), *,
                 builtin: bool = True) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if directories:
            loaders.append(jinja2.FileSystemLoader([os.fspath(d) for d in directories]))
        if builtin:
            loaders.append(jinja2.FileSystemLoader(BUILTIN_DIR))
        self._env = ImmutableSandboxedEnvironment(
            loader=jinja2.ChoiceLoader(loaders),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                                default_for_string=False, default=False),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            # Files do not change inside a Lambda container; skip the per-render stat.
            auto_reload=False,
        )
        self._chosen: dict[tuple[str, ...], jinja2.Template] = {}

    def email(self, notification: Notification, recipient: Recipient,
              unsubscribe_url: str | None = None,
              digest: Sequence[Notification] = ()) -> RenderedEmail:
        """The subject (whitespace folded to one line), HTML and text of the email; with a
        ``digest`` of two or more notifications, of its ``email-digest`` templates.

        Raises ``TemplateError`` when a part has no template or fails to render.
        """
        channel, context = _channel("email", notification, recipient, unsubscribe_url, digest)
        parts = {ext: self._render(notification.type, channel, recipient.locale, ext, context)
                 for ext in ("subject.txt", "html", "txt")}
        return RenderedEmail(subject=" ".join(parts["subject.txt"].split()),
                             html=parts["html"], text=parts["txt"].strip() + "\n")

    def sms(self, notification: Notification, recipient: Recipient,
            unsubscribe_url: str | None = None,
            digest: Sequence[Notification] = ()) -> RenderedSms:
        """The SMS body, trimmed (``sms-digest`` for a digest). Raises ``TemplateError`` as
        ``email`` does."""
        channel, context = _channel("sms", notification, recipient, unsubscribe_url, digest)
        body = self._render(notification.type, channel, recipient.locale, "txt", context)
        return RenderedSms(body=body.strip())

    def _render(self, kind: str, channel: str, locale: str, ext: str,
                context: dict[str, Any]) -> str:
        names = tuple(candidates(kind, channel, locale, ext))
        template = self._chosen.get(names)
        if template is None:
            try:
                template = self._env.select_template(names)
            except jinja2.TemplatesNotFound:
                raise TemplateError(f"no template for {channel} .{ext} of type {kind!r} in "
                                    f"locale {locale!r}; looked for {', '.join(names)}") from None
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(f"{e.name or names[0]}, line {e.lineno}: {e.message}") from e
            self._chosen[names] = template
        try:
            return template.render(context)
        except jinja2.TemplateSyntaxError as e:  # in a template this one extends or includes
            raise TemplateError(f"{e.name or template.name}, line {e.lineno}: {e.message}") from e
        except Exception as e:
            # Whatever a template raises (a missing variable, a sandbox refusal, a TypeError
            # in an expression) is that template's fault; callers handle one error type.
            raise TemplateError(f"{template.name}: {type(e).__name__}: {e}") from e


def candidates(type: str, channel: str, locale: str, ext: str) -> list[str]:
    """The template names tried for one part, most specific first.

    >>> candidates("enrollment.created", "sms", "pt_br", "txt")  # doctest: +NORMALIZE_WHITESPACE
    ['enrollment.created/sms.pt-BR.txt', 'enrollment.created/sms.pt.txt',
     'enrollment.created/sms.en.txt', 'default/sms.pt-BR.txt', 'default/sms.pt.txt',
     'default/sms.en.txt']

    A type that cannot be a directory name (``a/../b``, ``.hidden``) has no templates of its
    own and renders with ``default/``.
    """
    kinds = [type, DEFAULT_TYPE] if _TYPE.fullmatch(type) and type != DEFAULT_TYPE else [
        DEFAULT_TYPE]
    return [f"{kind}/{channel}.{tag}.{ext}" for kind in kinds for tag in locale_chain(locale)]


def locale_chain(locale: str) -> list[str]:
    """The BCP 47 tags to try for ``locale``, by dropping subtags, ending with ``'en'``.

    Separators and case are normalized (``pt_br`` → ``pt-BR``, ``zh-hant-tw`` →
    ``zh-Hant-TW``); a POSIX suffix (``.UTF-8``, ``@euro``) is dropped; anything that is not a
    language tag reads as English.

    >>> locale_chain("zh-hant-tw"), locale_chain("fr_CA.UTF-8"), locale_chain("../x")
    (['zh-Hant-TW', 'zh-Hant', 'zh', 'en'], ['fr-CA', 'fr', 'en'], ['en'])
    """
    tags = re.split(r"[.@]", locale.strip(), maxsplit=1)[0].replace("_", "-").split("-")
    if not tags[0].isalpha() or not all(_SUBTAG.fullmatch(tag) for tag in tags):
        return [FALLBACK_LOCALE]
    canonical = [tags[0].lower()] + [_subtag(tag) for tag in tags[1:]]
    chain = ["-".join(canonical[:n]) for n in range(len(canonical), 0, -1)]
    if FALLBACK_LOCALE not in chain:
        chain.append(FALLBACK_LOCALE)
    return chain


def _subtag(tag: str) -> str:
    if len(tag) == 4 and tag.isalpha():
        return tag.title()  # script: Hant, Latn
    if len(tag) == 2 and tag.isalpha():
        return tag.upper()  # region: BR, TW
    return tag.lower()  # numeric region (419) or variant


def _channel(channel: str, notification: Notification, recipient: Recipient,
             unsubscribe_url: str | None,
             digest: Sequence[Notification]) -> tuple[str, dict[str, Any]]:
    if len(digest) < 2:
        return channel, _context(digest[-1] if digest else notification, recipient,
                                 unsubscribe_url)
    # A digest's templates also see its notifications, oldest first; `notification` is the
    # newest, so a digest template can extend the layout a single email uses.
    events = [_fields(n) for n in digest]
    context = _context(digest[-1], recipient, unsubscribe_url)
    context.update(events=events, count=len(events), first=events[0], last=events[-1])
    return f"{channel}-digest", context


def _fields(notification: Notification) -> dict[str, Any]:
    return {
        "type": notification.type,
        "title": notification.title,
        "message": notification.message,
        "data": notification.data,
        "action_url": notification.action_url,
        "priority": notification.priority,
        "created_at": notification.created_at,
    }


def _context(notification: Notification, recipient: Recipient,
             unsubscribe_url: str | None) -> dict[str, Any]:
    # Plain dicts of exactly the documented fields: templates cannot reach the recipient's
    # email, phone or ids, and StrictUndefined names any field that is not provided.
    fields = _fields(notification)
    del fields["created_at"]
    return {
        "notification": fields,
        "recipient": {"full_name": recipient.full_name, "locale": recipient.locale},
        "unsubscribe_url": unsubscribe_url,
    }

