"""What the store refuses."""


class NoConnection(LookupError):
    """The connection has no row (never connected, or already cleaned up)."""


class TooManyChannels(Exception):
    """The connection already joined as many channels as allowed."""
