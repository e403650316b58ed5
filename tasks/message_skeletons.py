"""Message texts rendered once per kind and filled in per item (the deadline watch's many messages).

`Skeletons.render(name, context)` gives exactly what `tasks.notify.render_message(name, context)`
gives. The template is rendered once per template and per value of the fields that steer it
(days, deadline, version, ...), with a marker standing in for each plain text field (names, title,
link, ids); each message is then that skeleton with the markers replaced. A value that the
rendering's clean-up could treat differently from a marker (empty, a line break, trailing white
space, a marker character) is rendered in full instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tasks.notify import _SUBJECT_LIMIT, _clip, _one_line, render_message

__all__ = ["PLAIN_FIELDS", "Skeletons"]

# Fields the deadline-watch templates only print, never test or filter.
PLAIN_FIELDS = frozenset(
    {"organisation", "title", "unit", "receiver", "overdue_unit", "sender", "link", "receipt_id"}
    | {"milestone_key", "phase"}
)
_MARK = "\x00"


def _plain(value: Any) -> str | None:
    """The printed text of a value the skeleton can take, or None if it must be rendered in full."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    if not text or text != text.rstrip() or "\n" in text or "\r" in text or _MARK in text:
        return None
    return text


class Skeletons:
    """A per-run cache of rendered skeletons."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], tuple[str, str, tuple[str, ...]]] = {}

    def render(self, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
        plain = {k: _plain(v) for k, v in context.items() if k in PLAIN_FIELDS}
        if any(v is None for v in plain.values()):
            return render_message(name, context)
        fields = tuple(sorted(plain))
        steer = tuple(sorted((k, v) for k, v in context.items() if k not in PLAIN_FIELDS))
        key = (name, fields, steer)
        cached = self._cache.get(key)
        if cached is None:
            marked = dict(context) | {k: f"{_MARK}{i}{_MARK}" for i, k in enumerate(fields)}
            subject, body = render_message(name, marked)
            if len(subject) >= _SUBJECT_LIMIT:  # clipped: the filled-in subject must be clipped afresh
                return render_message(name, context)
            cached = self._cache[key] = (subject, body, fields)
        subject, body, fields = cached
        for i, k in enumerate(fields):
            mark, value = f"{_MARK}{i}{_MARK}", plain[k] or ""
            subject, body = subject.replace(mark, value), body.replace(mark, value)
        return _clip(_one_line(subject), _SUBJECT_LIMIT), body
