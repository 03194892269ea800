"""The notification settings as the environment gives them (RIPPLE_*)."""
from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from ripple.config import Settings


def test_sms_priorities_are_a_json_list_of_priorities(monkeypatch):
    monkeypatch.setenv("RIPPLE_SMS_PRIORITIES", '["normal", "high", "urgent"]')
    assert Settings().sms_priorities == ["normal", "high", "urgent"]


@pytest.mark.parametrize("value, error", [
    ('["high", "critical"]', ValidationError),  # not a priority
    ('["HIGH"]', ValidationError),
    ("high,urgent", SettingsError),             # not JSON
])
def test_a_bad_sms_priority_is_refused_when_the_settings_are_read(monkeypatch, value, error):
    monkeypatch.setenv("RIPPLE_SMS_PRIORITIES", value)
    with pytest.raises(error, match="sms_priorities"):
        Settings()


def test_blank_optional_settings_are_unset(monkeypatch):
    # What CloudFormation passes for a parameter left at its "" default.
    for name in ("RIPPLE_TEMPLATES_DIR", "RIPPLE_SMS_SENDER_ID", "RIPPLE_SES_CONFIGURATION_SET"):
        monkeypatch.setenv(name, "")
    config = Settings()
    assert (config.templates_dir, config.sms_sender_id, config.ses_configuration_set) == (None, None, None)
    monkeypatch.setenv("RIPPLE_TEMPLATES_DIR", "/opt/templates")
    assert Settings().templates_dir == "/opt/templates"


def test_the_maximum_attempts_of_a_delivery(monkeypatch):
    assert Settings().notify_max_attempts == 20
    monkeypatch.setenv("RIPPLE_NOTIFY_MAX_ATTEMPTS", "5")
    assert Settings().notify_max_attempts == 5
    monkeypatch.setenv("RIPPLE_NOTIFY_MAX_ATTEMPTS", "0")
    with pytest.raises(ValidationError, match="notify_max_attempts"):
        Settings()
