"""Routing: channel, priority, preference, address, suppression and quiet-hours rules."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from ripple.notify.models import (
    DeliveryRule,
    Notification,
    Preference,
    QuietHours,
    Recipient,
    RoutingConfig,
)
from ripple.notify.routing import (
    normalize_email,
    normalize_phone,
    plan,
    preference_for,
    quiet_until,
)

UTC = UTC
NOW = datetime(2026, 1, 15, 15, 0, tzinfo=UTC)  # a Thursday afternoon, far from any DST change
ADA = uuid.UUID("00000000-0000-0000-0000-00000000000a")
BOB = uuid.UUID("00000000-0000-0000-0000-00000000000b")


def notification(priority="high", delivery=("in_app", "email", "sms"), type="enrollment.created"):
    return Notification(id=uuid.uuid4(), type=type, title="Enrolled", message="Welcome",
                        priority=priority, delivery_method=list(delivery), created_at=NOW)


def recipient(user_id=ADA, email="Ada@Example.com", phone="+1 (415) 555-0100", tz="UTC"):
    return Recipient(user_id=user_id, full_name="Ada", email=email, phone=phone, timezone=tz)


def run(n=None, recipients=None, preferences=None, quiet=None, suppressed=(), now=NOW,
        config=None):
    return plan(n or notification(), recipients or [recipient()], preferences or {},
                quiet or {}, set(suppressed), now, config or RoutingConfig())


def by_channel(decisions):
    return {d.channel: d for d in decisions}


# --- channels and priority ------------------------------------------------------------------

@pytest.mark.parametrize("delivery, channels", [
    (["in_app"], []),
    (["email"], ["email"]),
    (["sms"], ["sms"]),
    (["sms", "in_app", "email"], ["email", "sms"]),
    ([], []),
])
def test_only_requested_delivery_channels_get_decisions(delivery, channels):
    assert [d.channel for d in run(notification(delivery=delivery))] == channels


@pytest.mark.parametrize("priority, sms_priorities, action", [
    ("low", None, "skip"),
    ("normal", None, "skip"),
    ("high", None, "send"),
    ("urgent", None, "send"),
    ("normal", {"normal", "high", "urgent"}, "send"),
    ("high", {"urgent"}, "skip"),
])
def test_sms_goes_out_only_for_configured_priorities(priority, sms_priorities, action):
    config = RoutingConfig(sms_priorities=sms_priorities) if sms_priorities else RoutingConfig()
    decisions = by_channel(run(notification(priority=priority), config=config))
    assert decisions["sms"].action == action
    assert decisions["sms"].reason == (None if action == "send" else "sms_requires_high_priority")
    assert decisions["email"].action == "send"  # the rule is SMS's alone


def test_send_decision_carries_recipient_and_normalized_addresses():
    decisions = by_channel(run())
    email, sms = decisions["email"], decisions["sms"]
    assert (email.action, email.reason, email.address) == ("send", None, "ada@example.com")
    assert (sms.action, sms.address, sms.not_before) == ("send", "+14155550100", None)
    assert email.user_id == ADA and email.recipient.full_name == "Ada"


def test_recipients_keep_order_and_duplicates_are_planned_once():
    people = [recipient(BOB), recipient(ADA), recipient(BOB, email="other@example.com")]
    decisions = run(recipients=people)
    assert [(d.user_id, d.channel) for d in decisions] == [
        (BOB, "email"), (BOB, "sms"), (ADA, "email"), (ADA, "sms")]
    assert decisions[0].address == "ada@example.com"  # the first listing wins


def test_now_must_be_aware():
    with pytest.raises(ValueError, match="timezone-aware"):
        run(now=datetime(2026, 1, 15, 12, 0))


# --- preferences ----------------------------------------------------------------------------

def pref(type, channel, enabled):
    return Preference(type=type, channel=channel, enabled=enabled)


@pytest.mark.parametrize("rows, expected", [
    ([], None),
    ([pref("*", "email", False)], False),
    ([pref("*", "email", True)], True),
    ([pref("*", "email", False), pref("enrollment.created", "email", True)], True),
    ([pref("enrollment.created", "email", True), pref("*", "email", False)], True),
    ([pref("*", "email", True), pref("enrollment.created", "email", False)], False),
    ([pref("other.type", "email", False)], None),
    ([pref("enrollment.created", "sms", False)], None),
    ([pref("enrollment.created", "email", True), pref("enrollment.created", "email", False)],
     False),
    ([pref("*", "email", False), pref("*", "email", True)], False),
])
def test_a_type_row_beats_the_wildcard_row(rows, expected):
    chosen = preference_for(rows, "enrollment.created", "email")
    assert (None if chosen is None else chosen.enabled) is expected


@pytest.mark.parametrize("rows, email, sms", [
    ([], "send", "send"),
    ([pref("*", "email", False)], "skip", "send"),
    ([pref("*", "sms", False)], "send", "skip"),
    ([pref("enrollment.created", "sms", False)], "send", "skip"),
    ([pref("*", "sms", False), pref("enrollment.created", "sms", True)], "send", "send"),
    ([pref("*", "in_app", False)], "send", "send"),
])
def test_disabled_preference_skips_as_opted_out(rows, email, sms):
    decisions = by_channel(run(preferences={ADA: rows}))
    assert (decisions["email"].action, decisions["sms"].action) == (email, sms)
    for d in decisions.values():
        assert d.reason == ("opted_out" if d.action == "skip" else None)


def test_opt_outs_hold_for_urgent():
    decisions = run(notification(priority="urgent"),
                    preferences={ADA: [pref("*", "email", False), pref("*", "sms", False)]})
    assert [(d.action, d.reason) for d in decisions] == [("skip", "opted_out")] * 2


def test_rows_keyed_by_user_id_text_still_apply():
    decisions = run(preferences={str(ADA): [pref("*", "email", False)]},
                    quiet={str(ADA): QuietHours(start=time(0), end=time(23, 59), timezone="UTC")})
    assert [(d.action, d.reason) for d in decisions] == [("skip", "opted_out"),
                                                         ("defer", "quiet_hours")]


@pytest.mark.parametrize("rows, action, reason", [
    ([], "skip", "not_opted_in"),
    ([pref("*", "sms", True)], "send", None),
    ([pref("enrollment.created", "sms", True)], "send", None),
    ([pref("*", "sms", True), pref("enrollment.created", "sms", False)], "skip", "opted_out"),
])
def test_opt_in_channels_need_an_enabling_preference(rows, action, reason):
    config = RoutingConfig(opt_in_channels={"sms"})
    decisions = by_channel(run(preferences={ADA: rows}, config=config))
    assert (decisions["sms"].action, decisions["sms"].reason) == (action, reason)
    assert decisions["email"].action == "send"


# --- addresses and suppression --------------------------------------------------------------

@pytest.mark.parametrize("raw, normalized", [
    ("+14155550100", "+14155550100"),
    ("+1 (415) 555-0100", "+14155550100"),
    ("+1.415.555.0100", "+14155550100"),
    (" +44 20 7946 0958 ", "+442079460958"),
    ("+49\u00a030\u00a0123456", "+4930123456"),
    ("+33 6 12 34 56 78", "+33612345678"),
    ("+12345678", None),                         # the right length, but no such number
    ("+123456789012345", None),
    ("+1 201 055 0123", None),                   # NANP exchanges never start with 0
    ("+1234567", None),                          # 7 digits
    ("+1234567890123456", None),                 # 16 digits
    ("+0155550100", None),                       # country codes never start with 0
    ("4155550100", None),                        # no +: no default country is guessed
    ("(415) 555-0100", None),
    ("001 415 555 0100", None),
    ("+1 415 555 0100 ext 2", None),
    ("+1-415-CALL-NOW", None),
    ("++14155550100", None),
    ("+١٤١٥٥٥٥٠١٠٠", None),                      # non-ASCII digits
    ("", None),
])
def test_e164_normalization(raw, normalized):
    assert normalize_phone(raw) == normalized


@pytest.mark.parametrize("raw, region, normalized", [
    ("(415) 555-0100", "US", "+14155550100"),
    ("020 7946 0958", "gb", "+442079460958"),
    ("+33 6 12 34 56 78", "US", "+33612345678"),   # a number with + keeps its own country
    ("555-0100", "US", None),                      # too short for any US number
    ("(415) 555-0100", None, None),                # no region: refused, not guessed
])
def test_numbers_without_a_plus_need_a_default_region(raw, region, normalized):
    config = RoutingConfig(default_region=region)
    assert normalize_phone(raw, config.default_region) == normalized
    decision = by_channel(run(recipients=[recipient(phone=raw)], config=config))["sms"]
    assert (decision.action, decision.address) == (("send", normalized) if normalized
                                                   else ("fail", None))


def test_a_number_that_cannot_exist_fails_as_invalid_phone():
    # The right shape for E.164, but no such exchange: refused here, not by SNS later.
    decision = by_channel(run(recipients=[recipient(phone="+1 415 055 0100")]))["sms"]
    assert (decision.action, decision.reason) == ("fail", "invalid_phone")
    assert by_channel(run(recipients=[recipient(phone="+1 415 555 0100")]))["sms"].action == "send"


def test_an_unknown_default_region_is_refused():
    with pytest.raises(ValidationError, match="region"):
        RoutingConfig(default_region="XX")


@pytest.mark.parametrize("raw, normalized", [
    ("ada@example.com", "ada@example.com"),
    ("  Ada.Lovelace+news@Example.CO.UK ", "ada.lovelace+news@example.co.uk"),
    ("ada@localhost", None),
    ("ada.example.com", None),
    ("ada@@example.com", None),
    ("ada@exa mple.com", None),
    ("ada@example.com\r\nBcc: eve@example.com", None),
    ("ada@example..com", None),
    ("ada@.example.com", None),
    ("a" * 250 + "@x.io", None),
    ("zoë@uni.test", None),                      # SES cannot send to a non-ASCII local part
    ("Ada@Bücher.Example", "ada@xn--bcher-kva.example"),
    ("ada@" + "x" * 64 + ".io", None),             # a domain label over 63 characters
])
def test_email_normalization(raw, normalized):
    assert normalize_email(raw) == normalized


@pytest.mark.parametrize("email, phone, email_outcome, sms_outcome", [
    (None, None, ("fail", "no_email_address"), ("fail", "no_phone_number")),
    ("  ", " ", ("fail", "no_email_address"), ("fail", "no_phone_number")),
    ("not-an-email", "555-0100", ("fail", "invalid_email"), ("fail", "invalid_phone")),
    ("ada@example.com", "4155550100", ("send", None), ("fail", "invalid_phone")),
])
def test_missing_or_invalid_address_fails_with_reason(email, phone, email_outcome, sms_outcome):
    decisions = by_channel(run(recipients=[recipient(email=email, phone=phone)]))
    assert (decisions["email"].action, decisions["email"].reason) == email_outcome
    assert (decisions["sms"].action, decisions["sms"].reason) == sms_outcome
    assert all(d.address is None for d in decisions.values() if d.action == "fail")


def test_opt_out_and_priority_come_before_address_checks():
    person = recipient(email=None, phone=None)
    decisions = by_channel(run(notification(priority="normal"), recipients=[person],
                               preferences={ADA: [pref("*", "email", False)]}))
    assert decisions["email"].reason == "opted_out"
    assert decisions["sms"].reason == "sms_requires_high_priority"


@pytest.mark.parametrize("suppressed, email, sms", [
    (set(), "send", "send"),
    ({"ada@example.com"}, "suppress", "send"),
    ({" ADA@EXAMPLE.COM"}, "suppress", "send"),          # any spelling of the address
    ({"+14155550100"}, "send", "suppress"),
    ({"+1 415-555-0100"}, "send", "suppress"),
    ({"bob@example.com", "+14155550199"}, "send", "send"),
])
def test_suppressed_addresses_are_suppressed(suppressed, email, sms):
    decisions = by_channel(run(suppressed=suppressed))
    assert (decisions["email"].action, decisions["sms"].action) == (email, sms)
    for d in decisions.values():
        assert d.reason == ("suppressed" if d.action == "suppress" else None)
        assert d.address is not None


def test_suppression_wins_over_quiet_hours_and_urgent():
    night = {ADA: QuietHours(start=time(0), end=time(23, 59), timezone="UTC")}
    for priority in ("high", "urgent"):
        decisions = run(notification(priority=priority), quiet=night,
                        suppressed={"ada@example.com", "+14155550100"})
        assert [d.action for d in decisions] == ["suppress", "suppress"]


# --- quiet hours ----------------------------------------------------------------------------

NY = "America/New_York"


def at(text):
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize("start, end, tz, now, until", [
    # 22:00-07:00 in New York (UTC-5 in January)
    (time(22), time(7), NY, "2026-01-15T21:59:59-05:00", None),
    (time(22), time(7), NY, "2026-01-15T22:00:00-05:00", "2026-01-16T07:00:00-05:00"),
    (time(22), time(7), NY, "2026-01-15T23:30:00-05:00", "2026-01-16T07:00:00-05:00"),
    (time(22), time(7), NY, "2026-01-16T00:00:00-05:00", "2026-01-16T07:00:00-05:00"),
    (time(22), time(7), NY, "2026-01-16T06:59:59-05:00", "2026-01-16T07:00:00-05:00"),
    (time(22), time(7), NY, "2026-01-16T07:00:00-05:00", None),   # end is exclusive
    (time(22), time(7), NY, "2026-01-16T12:00:00-05:00", None),
    # a window within one day
    (time(12), time(14), "Europe/Paris", "2026-01-15T12:30:00+01:00", "2026-01-15T14:00:00+01:00"),
    (time(12), time(14), "Europe/Paris", "2026-01-15T11:59:00+01:00", None),
    (time(12), time(14), "Europe/Paris", "2026-01-15T14:00:00+01:00", None),
    # empty windows
    (time(7), time(7), NY, "2026-01-15T07:00:00-05:00", None),
    (None, time(7), NY, "2026-01-15T03:00:00-05:00", None),
    (time(22), None, NY, "2026-01-15T23:00:00-05:00", None),
    # a half-hour zone
    (time(21, 30), time(6, 30), "Asia/Kolkata", "2026-01-15T23:00:00+05:30",
     "2026-01-16T06:30:00+05:30"),
    # spring forward, 2026-03-08 02:00 EST -> 03:00 EDT: the night is one hour shorter
    (time(22), time(7), NY, "2026-03-07T22:00:00-05:00", "2026-03-08T07:00:00-04:00"),
    (time(22), time(7), NY, "2026-03-08T01:59:00-05:00", "2026-03-08T07:00:00-04:00"),
    (time(22), time(7), NY, "2026-03-08T03:00:00-04:00", "2026-03-08T07:00:00-04:00"),
    (time(22), time(7), NY, "2026-03-08T07:00:00-04:00", None),
    # ... an end the jump skips is reached at the jump
    (time(1), time(2, 30), NY, "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00"),
    # ... a start the jump skips: 03:00 EDT is past it
    (time(2, 30), time(6), NY, "2026-03-08T03:00:00-04:00", "2026-03-08T06:00:00-04:00"),
    # fall back, 2026-11-01 02:00 EDT -> 01:00 EST: the night is one hour longer
    (time(22), time(7), NY, "2026-10-31T22:00:00-04:00", "2026-11-01T07:00:00-05:00"),
    (time(22), time(7), NY, "2026-11-01T01:30:00-04:00", "2026-11-01T07:00:00-05:00"),
    (time(22), time(7), NY, "2026-11-01T01:30:00-05:00", "2026-11-01T07:00:00-05:00"),
    # ... an end in the repeated hour: first reading, or second when past the first
    (time(22), time(1, 30), NY, "2026-11-01T01:10:00-04:00", "2026-11-01T01:30:00-04:00"),
    (time(22), time(1, 30), NY, "2026-11-01T01:10:00-05:00", "2026-11-01T01:30:00-05:00"),
    (time(22), time(1, 30), NY, "2026-11-01T01:45:00-04:00", None),
    # southern hemisphere: Sydney leaves DST on 2026-04-05 03:00 AEDT -> 02:00 AEST
    (time(22), time(7), "Australia/Sydney", "2026-04-04T23:00:00+11:00",
     "2026-04-05T07:00:00+10:00"),
])
def test_quiet_until(start, end, tz, now, until):
    window = QuietHours(start=start, end=end, timezone=tz)
    assert quiet_until(window, "UTC", at(now)) == (at(until) if until else None)


def test_quiet_until_is_utc():
    window = QuietHours(start=time(22), end=time(7), timezone=NY)
    assert quiet_until(window, "UTC", at("2026-01-15T23:00:00-05:00")).tzinfo is UTC


@pytest.mark.parametrize("window_tz, recipient_tz, now, until", [
    ("Asia/Tokyo", "America/New_York", "2026-01-15T23:00:00+09:00", "2026-01-16T07:00:00+09:00"),
    (None, "Asia/Tokyo", "2026-01-15T23:00:00+09:00", "2026-01-16T07:00:00+09:00"),
    ("", "Asia/Tokyo", "2026-01-15T23:00:00+09:00", "2026-01-16T07:00:00+09:00"),
    ("Mars/Olympus_Mons", "Asia/Tokyo", "2026-01-15T23:00:00+09:00",
     "2026-01-16T07:00:00+09:00"),
    (None, "Not/AZone", "2026-01-15T23:00:00+00:00", "2026-01-16T07:00:00+00:00"),
    ("../../etc/passwd", "", "2026-01-15T23:00:00+00:00", "2026-01-16T07:00:00+00:00"),
])
def test_quiet_hours_zone_falls_back_to_recipient_then_utc(window_tz, recipient_tz, now, until):
    window = QuietHours(start=time(22), end=time(7), timezone=window_tz)
    assert quiet_until(window, recipient_tz, at(now)) == at(until)


@pytest.mark.parametrize("priority, bypass, action", [
    ("low", None, "defer"),
    ("normal", None, "defer"),
    ("high", None, "defer"),
    ("urgent", None, "send"),
    ("high", {"high", "urgent"}, "send"),
    ("urgent", set(), "defer"),
])
def test_quiet_hours_defer_email_and_sms_unless_bypassed(priority, bypass, action):
    config = (RoutingConfig(quiet_hours_bypass=bypass, sms_priorities={"low", "normal", "high",
                                                                        "urgent"})
              if bypass is not None
              else RoutingConfig(sms_priorities={"low", "normal", "high", "urgent"}))
    quiet = {ADA: QuietHours(start=time(22), end=time(7), timezone=NY)}
    now = at("2026-01-15T23:15:00-05:00")
    decisions = run(notification(priority=priority), quiet=quiet, now=now, config=config)
    assert [d.action for d in decisions] == [action, action]
    for d in decisions:
        if action == "defer":
            assert (d.reason, d.not_before) == ("quiet_hours", at("2026-01-16T07:00:00-05:00"))
            assert d.address is not None
        else:
            assert (d.reason, d.not_before) == (None, None)


def test_quiet_hours_use_recipient_zone_when_window_has_none():
    tokyo = recipient(tz="Asia/Tokyo")
    quiet = {ADA: QuietHours(start=time(22), end=time(7))}
    deferred = run(recipients=[tokyo], quiet=quiet, now=at("2026-01-15T23:00:00+09:00"))
    assert {d.not_before for d in deferred} == {at("2026-01-16T07:00:00+09:00")}
    daytime = run(recipients=[tokyo], quiet=quiet, now=at("2026-01-15T12:00:00+09:00"))
    assert {d.action for d in daytime} == {"send"}


def test_quiet_hours_only_apply_to_their_user():
    quiet = {BOB: QuietHours(start=time(0), end=time(23, 59), timezone="UTC")}
    decisions = run(recipients=[recipient(ADA), recipient(BOB)], quiet=quiet)
    assert [(d.user_id, d.action) for d in decisions] == [
        (ADA, "send"), (ADA, "send"), (BOB, "defer"), (BOB, "defer")]


def test_final_outcomes_come_before_defer():
    quiet = {ADA: QuietHours(start=time(0), end=time(23, 59), timezone="UTC")}
    decisions = by_channel(run(notification(priority="normal"), quiet=quiet,
                               recipients=[recipient(email="broken")]))
    assert (decisions["email"].action, decisions["email"].reason) == ("fail", "invalid_email")
    assert decisions["sms"].reason == "sms_requires_high_priority"


def test_deferral_is_always_in_the_future():
    quiet = {ADA: QuietHours(start=time(22), end=time(7), timezone=NY)}
    start = at("2026-10-31T20:00:00-04:00")
    for minute in range(0, 16 * 60, 7):  # across the fall-back night, minute by minute-ish
        now = start + timedelta(minutes=minute)
        for d in run(quiet=quiet, now=now):
            if d.action == "defer":
                assert now < d.not_before <= now + timedelta(hours=10)


# --- models ---------------------------------------------------------------------------------

def test_models_read_database_rows_and_are_immutable():
    row = {"id": str(uuid.uuid4()), "organization_id": None, "user_id": str(ADA),
           "role_target": None, "type": "t", "title": "T", "message": "M", "priority": "urgent",
           "delivery_method": ["in_app", "sms"], "action_url": None, "data": {"k": 1},
           "created_at": "2026-01-15T12:00:00+00:00", "read_at": None, "is_read": False}
    n = Notification.model_validate(row)
    assert n.user_id == ADA and n.delivery_method == ["in_app", "sms"]
    with pytest.raises(ValidationError):
        n.title = "changed"
    with pytest.raises(ValidationError):
        Notification.model_validate({**row, "priority": "critical"})
    with pytest.raises(ValidationError):
        Notification.model_validate({**row, "delivery_method": ["push"]})


def test_quiet_hours_and_recipients_read_their_rows():
    settings = {"user_id": str(ADA), "quiet_hours_start": "22:00:00",
                "quiet_hours_end": "07:00:00", "timezone": "Europe/Lisbon"}
    assert QuietHours.model_validate(settings) == QuietHours(start=time(22), end=time(7),
                                                             timezone="Europe/Lisbon")
    profile = {"user_id": str(ADA), "organization_id": None, "role": "student",
               "full_name": None, "email": None, "phone": None, "locale": None,
               "timezone": None}
    person = Recipient.model_validate(profile)
    assert (person.locale, person.timezone) == ("en", "UTC")


# --- delivery rules: cancellation, escalation, throttle ---------------------------------------

def test_a_cancelled_notification_skips_every_channel_first():
    n = notification().model_copy(update={"cancelled_at": NOW})
    decisions = run(n, recipients=[recipient(email=None)])  # even before the address check
    assert {(d.action, d.reason) for d in decisions} == {("skip", "cancelled")}


def test_escalation_defers_until_created_at_plus_the_delay_then_sends():
    rule = DeliveryRule(escalate_after=timedelta(minutes=10))
    n = notification()
    waiting = by_channel(plan(n, [recipient()], {}, {}, set(), NOW, RoutingConfig(), rule=rule))
    assert {(d.action, d.reason, d.not_before) for d in waiting.values()} == {
        ("defer", "escalation", NOW + timedelta(minutes=10))}
    later = NOW + timedelta(minutes=10)
    due = plan(n, [recipient()], {}, {}, set(), later, RoutingConfig(), rule=rule)
    assert {d.action for d in due} == {"send"}
    read = plan(n, [recipient()], {}, {}, set(), later, RoutingConfig(), rule=rule, read={ADA})
    assert {(d.action, d.reason) for d in read} == {("skip", "read_in_app")}


def test_escalation_needs_an_in_app_copy():
    rule = DeliveryRule(escalate_after=timedelta(minutes=10))
    email_only = notification(delivery=("email",))
    decisions = plan(email_only, [recipient()], {}, {}, set(), NOW, RoutingConfig(), rule=rule,
                     read={ADA})
    assert [d.action for d in decisions] == ["send"]


def test_a_throttle_skips_once_the_limit_is_reached_per_channel():
    rule = DeliveryRule(throttle_limit=3, throttle_window=timedelta(hours=1))
    decisions = by_channel(plan(notification(), [recipient()], {}, {}, set(), NOW,
                                RoutingConfig(), rule=rule,
                                recent_sends={(ADA, "email"): 3, (ADA, "sms"): 2}))
    assert (decisions["email"].action, decisions["email"].reason) == ("skip", "throttled")
    assert decisions["sms"].action == "send"


def test_an_opt_out_still_comes_before_the_rules():
    rule = DeliveryRule(throttle_limit=1, throttle_window=timedelta(hours=1))
    decisions = by_channel(plan(notification(), [recipient()],
                                {ADA: [pref("*", "email", False)]}, {}, set(), NOW,
                                RoutingConfig(), rule=rule, recent_sends={(ADA, "email"): 5}))
    assert decisions["email"].reason == "opted_out"
