"""Settings changed for a while in this process, which stands in for every function's container."""
from __future__ import annotations

import os


def swap(values: dict[str, str | None]) -> dict[str, str | None]:
    """Set each variable (None: unset it); returns what they were, for `swap` to put back."""
    before = {key: os.environ.get(key) for key in values}
    for key, value in values.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return before
