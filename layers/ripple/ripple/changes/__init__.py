"""Postgres changes: subscriptions at join, and the plan and posts of each drained batch."""
