"""Errors of the notify package; ``str(e)`` says what went wrong without leaking secrets."""
from __future__ import annotations


class TemplateError(Exception):
    """A notification could not be rendered: no template found, a syntax error, a missing
    variable, or an operation the sandbox forbids. ``str(e)`` names the template."""


class InvalidToken(ValueError):
    """An unsubscribe token that is malformed, tampered with, or expired."""
