"""Templates: the lookup chain, the loader chain, escaping, strictness and the sandbox."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from ripple.notify.exceptions import TemplateError
from ripple.notify.models import Notification, Recipient
from ripple.notify.templates import BUILTIN_DIR, Templates, candidates, locale_chain

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def notification(type="welcome", title="Hello", message="Body", action_url=None, data=None,
                 priority="normal"):
    return Notification(id=uuid.uuid4(), type=type, title=title, message=message,
                        action_url=action_url, data=data or {}, priority=priority,
                        delivery_method=["email", "sms"], created_at=NOW)


def recipient(locale="en", full_name="Ada"):
    return Recipient(user_id=uuid.uuid4(), full_name=full_name, locale=locale)


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


# --- names ----------------------------------------------------------------------------------

@pytest.mark.parametrize("locale, chain", [
    ("en", ["en"]),
    ("pt-BR", ["pt-BR", "pt", "en"]),
    ("pt_br", ["pt-BR", "pt", "en"]),
    ("PT-br", ["pt-BR", "pt", "en"]),
    ("en-GB", ["en-GB", "en"]),
    ("fr_CA.UTF-8", ["fr-CA", "fr", "en"]),
    ("de_DE@euro", ["de-DE", "de", "en"]),
    ("zh-hant-tw", ["zh-Hant-TW", "zh-Hant", "zh", "en"]),
    ("es-419", ["es-419", "es", "en"]),
    ("", ["en"]),
    ("../../etc", ["en"]),
    ("en/../x", ["en"]),
    ("419", ["en"]),
    ("toolongsubtag-x", ["en"]),
])
def test_locale_chain(locale, chain):
    assert locale_chain(locale) == chain


@pytest.mark.parametrize("type, kinds", [
    ("enrollment.created", ["enrollment.created", "default"]),
    ("invoice_paid", ["invoice_paid", "default"]),
    ("default", ["default"]),
    ("../secrets", ["default"]),
    ("a/b", ["default"]),
    (".hidden", ["default"]),
    ("", ["default"]),
])
def test_candidates_try_the_type_then_default(type, kinds):
    names = candidates(type, "email", "pt-BR", "html")
    assert names == [f"{kind}/email.{tag}.html" for kind in kinds for tag in ("pt-BR", "pt", "en")]


# --- the lookup chain -----------------------------------------------------------------------

ALL_SMS = ["welcome/sms.pt-BR.txt", "welcome/sms.pt.txt", "welcome/sms.en.txt",
           "default/sms.pt-BR.txt", "default/sms.pt.txt", "default/sms.en.txt"]


@pytest.mark.parametrize("present, chosen", [
    (ALL_SMS, "welcome/sms.pt-BR.txt"),
    (ALL_SMS[1:], "welcome/sms.pt.txt"),
    (ALL_SMS[2:], "welcome/sms.en.txt"),
    (ALL_SMS[3:], "default/sms.pt-BR.txt"),
    (ALL_SMS[4:], "default/sms.pt.txt"),
    (ALL_SMS[5:], "default/sms.en.txt"),
    (["welcome/sms.pt.txt", "default/sms.pt-BR.txt"], "welcome/sms.pt.txt"),
    (["welcome/sms.en.txt", "default/sms.pt-BR.txt"], "welcome/sms.en.txt"),
    (["welcome/sms.fr.txt", "default/sms.pt.txt"], "default/sms.pt.txt"),
])
def test_fallback_chain_locale_base_language_english_then_default(tmp_path, present, chosen):
    write(tmp_path, {name: name for name in present})
    templates = Templates([tmp_path], builtin=False)
    assert templates.sms(notification(), recipient("pt-BR")).body == chosen


def test_builtin_default_is_the_last_resort(tmp_path):
    templates = Templates([tmp_path])
    assert templates.sms(notification(title="Hi", message="there"), recipient("ja")).body == \
        "Hi: there"


def test_application_templates_shadow_builtins_of_the_same_name(tmp_path):
    write(tmp_path, {"default/sms.en.txt": "app default: {{ notification.title }}"})
    assert Templates([tmp_path]).sms(notification(), recipient()).body == "app default: Hello"


def test_a_builtin_type_template_beats_an_application_default(tmp_path):
    write(tmp_path, {"default/sms.en.txt": "app default"})
    body = Templates([tmp_path]).sms(notification(type="enrollment.created"), recipient()).body
    assert body.startswith("Hello:") and body != "app default"


def test_directories_are_searched_in_order(tmp_path):
    first = write(tmp_path / "first", {"welcome/sms.en.txt": "first"})
    second = write(tmp_path / "second", {"welcome/sms.en.txt": "second",
                                         "welcome/sms.fr.txt": "second fr"})
    templates = Templates([first, second], builtin=False)
    assert templates.sms(notification(), recipient("en")).body == "first"
    assert templates.sms(notification(), recipient("fr")).body == "second fr"


def test_email_parts_resolve_each_on_their_own(tmp_path):
    write(tmp_path, {"welcome/email.en.subject.txt": "Welcome aboard, {{ recipient.full_name }}"})
    email = Templates([tmp_path]).email(notification(title="Hello"), recipient())
    assert email.subject == "Welcome aboard, Ada"
    assert "<h1" in email.html and "Hello" in email.text  # html and text: built-in defaults


def test_app_templates_can_extend_the_builtin_layout(tmp_path):
    write(tmp_path, {"welcome/email.en.html":
                     '{% extends "layout/email.html" %}{% block content %}<p>custom</p>'
                     '{% endblock %}{% block action_label %}Go{% endblock %}'})
    html = Templates([tmp_path]).email(notification(action_url="https://x.example/a"),
                                       recipient()).html
    assert "<p>custom</p>" in html and ">Go</a>" in html and "<!DOCTYPE html>" in html


def test_a_type_that_is_not_a_directory_name_renders_with_default(tmp_path):
    write(tmp_path, {"secrets/sms.en.txt": "outside the template directory"})
    app = write(tmp_path / "app", {"default/sms.en.txt": "default"})
    templates = Templates([app], builtin=False)
    assert templates.sms(notification(type="../secrets"), recipient()).body == "default"


def test_no_template_at_all_is_a_clear_error(tmp_path):
    with pytest.raises(TemplateError, match=r"no template for sms .txt of type 'welcome'.*"
                                            r"default/sms.en.txt"):
        Templates([tmp_path], builtin=False).sms(notification(), recipient())


# --- escaping -------------------------------------------------------------------------------

HOSTILE = notification(title='<script>alert("x")</script> & co',
                       message="1 < 2 & \"quotes\"", action_url="https://x.example/?a=1&b=<2>")


def test_html_is_autoescaped():
    email = Templates().email(HOSTILE, recipient(full_name="<b>Ada</b>"),
                              unsubscribe_url="https://x.example/u?t=1&x=2")
    assert "<script>" not in email.html and "<b>Ada</b>" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in email.html
    assert "1 &lt; 2 &amp; &#34;quotes&#34;" in email.html
    assert 'href="https://x.example/?a=1&amp;b=&lt;2&gt;"' in email.html
    assert 'href="https://x.example/u?t=1&amp;x=2"' in email.html


def test_text_parts_are_not_escaped():
    templates = Templates()
    email = templates.email(HOSTILE, recipient(full_name="<b>Ada</b>"))
    assert email.subject == '<script>alert("x")</script> & co'
    assert "Hi <b>Ada</b>," in email.text and "1 < 2 & \"quotes\"" in email.text
    assert "https://x.example/?a=1&b=<2>" in email.text
    assert templates.sms(HOSTILE, recipient()).body.startswith('<script>alert("x")</script> & co')


def test_app_html_templates_are_autoescaped_and_text_templates_are_not(tmp_path):
    write(tmp_path, {"welcome/email.en.html": "{{ notification.data.v }}",
                     "welcome/email.en.txt": "{{ notification.data.v }}",
                     "welcome/email.en.subject.txt": "{{ notification.data.v }}"})
    email = Templates([tmp_path]).email(notification(data={"v": "<i>&</i>"}), recipient())
    assert (email.html, email.text, email.subject) == ("&lt;i&gt;&amp;&lt;/i&gt;", "<i>&</i>\n",
                                                       "<i>&</i>")


def test_subject_is_one_line(tmp_path):
    write(tmp_path, {"welcome/email.en.subject.txt": "\n  Line one\r\nline\ttwo  \n"})
    assert Templates([tmp_path]).email(notification(), recipient()).subject == \
        "Line one line two"


# --- strictness and the sandbox --------------------------------------------------------------

@pytest.mark.parametrize("source, message", [
    ("{{ notification.data.missing }}", "missing"),
    ("{{ recipient.email }}", "email"),
    ("{{ user }}", "'user' is undefined"),
    ("{{ notification.nope.deeper }}", "nope"),
    ("{% for x in notification.data.items_list %}{{ x }}{% endfor %}", "items_list"),
])
def test_missing_variables_are_errors_naming_the_template(tmp_path, source, message):
    write(tmp_path, {"welcome/sms.en.txt": source})
    with pytest.raises(TemplateError, match="welcome/sms.en.txt") as error:
        Templates([tmp_path], builtin=False).sms(notification(), recipient())
    assert message in str(error.value)


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ notification.__class__ }}",
    "{{ notification.data.update({'x': 1}) }}",
    "{{ notification.data.pop('k') }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ range(10**9) | list | length }}",
])
def test_the_sandbox_refuses_unsafe_templates(tmp_path, source):
    write(tmp_path, {"welcome/sms.en.txt": source})
    n = notification(data={"k": "v"})
    with pytest.raises(TemplateError, match="welcome/sms.en.txt"):
        Templates([tmp_path], builtin=False).sms(n, recipient())
    assert n.data == {"k": "v"}


@pytest.mark.parametrize("source", ["{{ notification.title ", "{% if x %}never closed"])
def test_syntax_errors_name_template_and_line(tmp_path, source):
    write(tmp_path, {"welcome/sms.en.txt": "line one\n" + source})
    with pytest.raises(TemplateError, match=r"welcome/sms.en.txt, line 2"):
        Templates([tmp_path], builtin=False).sms(notification(), recipient())


def test_expression_errors_are_template_errors(tmp_path):
    write(tmp_path, {"welcome/sms.en.txt": "{{ notification.data.n + 1 }}"})
    with pytest.raises(TemplateError, match="TypeError"):
        Templates([tmp_path], builtin=False).sms(notification(data={"n": "1"}), recipient())


def test_optional_fields_render_when_absent():
    n = notification(action_url=None, data={})
    email = Templates().email(n, recipient(full_name=None), unsubscribe_url=None)
    assert "Hi," in email.text and "Unsubscribe" not in email.text
    assert "Unsubscribe" not in email.html and "View details" not in email.html


# --- the built-in templates ------------------------------------------------------------------

def test_builtin_templates_ship_with_the_package():
    shipped = {p.relative_to(BUILTIN_DIR).as_posix() for p in BUILTIN_DIR.rglob("*") if p.is_file()}
    assert {"default/email.en.subject.txt", "default/email.en.html", "default/email.en.txt",
            "default/sms.en.txt", "layout/email.html"} <= shipped
    assert any(name.startswith("enrollment.created/") for name in shipped)


def test_default_email():
    n = notification(title="Invoice paid", message="We received $20.\n\nThanks!",
                     action_url="https://app.example/invoices/7", priority="urgent")
    email = Templates().email(n, recipient(full_name="Ada"),
                              unsubscribe_url="https://api.example/unsubscribe?token=T")
    assert email.subject == "Invoice paid"
    assert email.text == ("Hi Ada,\n\nInvoice paid\n\nWe received $20.\n\nThanks!\n\n"
                          "View details: https://app.example/invoices/7\n\n--\n"
                          "Unsubscribe from these emails: "
                          "https://api.example/unsubscribe?token=T\n")
    html = email.html
    assert html.startswith("<!DOCTYPE html>") and 'lang="en"' in html
    assert ">Invoice paid</h1>" in html and ">Hi Ada,</p>" in html
    assert ">We received $20.</p>" in html and ">Thanks!</p>" in html
    assert 'href="https://app.example/invoices/7"' in html and ">View details</a>" in html
    assert 'href="https://api.example/unsubscribe?token=T"' in html and ">Unsubscribe</a>" in html
    assert ">Urgent</span>" in html
    assert "<style" not in html  # inline styles only: mail clients drop style blocks


def test_example_type_uses_its_data_and_falls_back_without_it():
    templates = Templates()
    n = notification(type="enrollment.created", title="New enrollment", message="Please review.",
                     data={"student_name": "Ada", "group_name": "Piano"},
                     action_url="https://app.example/e/1")
    email = templates.email(n, recipient(locale="pt-BR"))
    assert email.subject == "Ada enrolled in Piano"
    assert "Ada joined Piano" in email.html
    assert ">Open the enrollment</a>" in email.html
    assert "Ada joined Piano." in email.text and "Open the enrollment: https://app.example/e/1" in email.text
    assert templates.sms(n, recipient()).body == "Ada enrolled in Piano. Please review. https://app.example/e/1"

    bare = notification(type="enrollment.created", title="New enrollment", message="Hi.")
    email = templates.email(bare, recipient())
    assert email.subject == "New enrollment" and "joined" not in email.html
    assert templates.sms(bare, recipient()).body == "New enrollment: Hi."


def test_rendered_sms_counts_its_segments():
    sms = Templates().sms(notification(title="T", message="x" * 300), recipient())
    assert sms.segments == 2
