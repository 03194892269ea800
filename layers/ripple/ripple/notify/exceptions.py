"""Errors of the notify package; ``str(e)`` says what went wrong without leaking secrets."""
from __future__ import annotations


class TemplateError(Exception):
    """A notification could not be rendered: no template found, a syntax error, a missing
    variable, or an operation the sandbox forbids. ``str(e)`` names the template."""


class InvalidToken(ValueError):
    """An unsubscribe token that is malformed, tampered with, or expired."""


class ApiError(Exception):
    """A REST request refused with ``status``: ``message`` and, for invalid input, the
    ``errors`` (``{"field", "message"}`` each); the API answers it as ``ErrorBody`` JSON."""

    def __init__(self, status: int, message: str, errors: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.errors = status, message, errors
        self.headers = headers or {}
