"""Errors a user can cause and fix. The command line prints them as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in input (configuration, arguments, a returned document), never a bug.

    The message is one line that names the file, the field and the offending value.
    """

    exit_code = 2

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class ConfigError(UserError):
    """Invalid configuration file."""

    def __init__(self, file: str, field: str, problem: str) -> None:
        super().__init__(f"{file}: {field}: {problem}")
        self.file, self.field, self.problem = file, field, problem


class NotFoundError(UserError):
    """Something the user named does not exist (a receipt, a cycle, a phase)."""


class GateNotMetError(UserError):
    """A phase was triggered before the receipts it depends on were agreed."""

    def __init__(self, phase: str, missing: list[str]) -> None:
        shown = "; ".join(missing[:20]) + (f"; … and {len(missing) - 20} more" if len(missing) > 20 else "")
        super().__init__(
            f"phase '{phase}' cannot start: {len(missing)} receipt(s) missing: {shown}"
            ' (use --override --reason "..." to proceed anyway)'
        )
        self.phase, self.missing = phase, missing


class AuthorisationError(UserError):
    """Someone tried to do what they are not allowed to (sign for another unit, wrong code)."""
