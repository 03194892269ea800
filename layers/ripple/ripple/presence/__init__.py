"""Presence: who is in a channel, as `presence_state` and `presence_diff` messages."""
