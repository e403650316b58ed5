"""Operator accounts for the overview pages: argon2 password hashes in the database."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from models.db import with_retry
from models.errors import UserError
from models.tables import PortalOperator

_HASHER = PasswordHasher()
_USERNAME = re.compile(r"^[a-z0-9_.-]{2,60}$")
# Verified against when the username is unknown, so both cases take the same time.
_DUMMY = _HASHER.hash("styrkedja-no-such-operator")


def add_operator(username: str, name: str, password: str, url: str | None = None) -> bool:
    """Create the account or set its password and name; True when it is new."""
    if not _USERNAME.match(username):
        raise UserError(f"username: {username!r} must be 2–60 characters a–z, 0–9, '.', '_' or '-'")
    if len(password) < 12:
        raise UserError("password: at least 12 characters")
    hashed = _HASHER.hash(password)

    def work(session: Session) -> bool:
        row = session.exec(select(PortalOperator).where(PortalOperator.username == username)).first()
        created = row is None
        row = row or PortalOperator(username=username, name=name, password_hash=hashed)
        row.name, row.password_hash = name or username, hashed
        session.add(row)
        return created

    return with_retry(work, url)


def check_password(session: Session, username: str, password: str) -> PortalOperator | None:
    row = session.exec(select(PortalOperator).where(PortalOperator.username == username)).first()
    try:
        _HASHER.verify(row.password_hash if row else _DUMMY, password)
    except (VerificationError, InvalidHashError):
        return None
    return row
