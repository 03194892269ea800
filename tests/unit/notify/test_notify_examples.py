"""The examples in the notify package's docstrings run as written."""
from __future__ import annotations

import doctest

import pytest

from ripple.notify import digest, errors, routing, sms, templates, unsubscribe, webhooks


@pytest.mark.parametrize("module", [digest, errors, routing, sms, templates, unsubscribe,
                                    webhooks],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
