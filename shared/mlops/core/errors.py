"""Errors that decide what happens to a message, and the one way validation problems are worded."""

from __future__ import annotations

from pydantic import ValidationError


class PermanentError(Exception):
    """The input can never succeed, however often it is retried: dead-letter it now."""


def validation_problems(error: ValidationError, *, prefix: str = "", upper: bool = False) -> list[str]:
    """Each pydantic error as `path: message`, the path dotted (`<root>` for the whole value)."""
    problems = []
    for entry in error.errors():
        path = ".".join(str(part) for part in entry["loc"]) or "<root>"
        # pydantic prefixes a validator's own message with "Value error, ": the message is the point.
        message = entry["msg"].removeprefix("Value error, ")
        problems.append(f"{prefix}{path.upper() if upper else path}: {message}")
    return problems
