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
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is not str or not value or value[-1].isspace() or "\n" in value or "\r" in value or _MARK in value:
        return None
    return value


class Skeletons:
    """A per-run cache of rendered skeletons."""

    def __init__(self) -> None:
        self._cache: dict[tuple[Any, ...], tuple[str, str]] = {}
        self._shapes: dict[tuple[str, tuple[str, ...]], tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def render(self, name: str, context: Mapping[str, Any]) -> tuple[str, str]:
        names = tuple(context)
        shape = self._shapes.get((name, names))
        if shape is None:
            fields = tuple(sorted(k for k in names if k in PLAIN_FIELDS))
            steer = tuple(sorted(k for k in names if k not in PLAIN_FIELDS))
            shape = self._shapes[(name, names)] = (fields, steer)
        fields, steer = shape
        values = [_plain(context[k]) for k in fields]
        if None in values:
            return render_message(name, context)
        key = (name, fields, *(context[k] for k in steer))
        cached = self._cache.get(key)
        if cached is None:
            marked = dict(context) | {k: f"{_MARK}{i}{_MARK}" for i, k in enumerate(fields)}
            cached = render_message(name, marked)
            if len(cached[0]) >= _SUBJECT_LIMIT:  # clipped: the filled-in subject must be clipped afresh
                return render_message(name, context)
            self._cache[key] = cached
        subject, body = cached
        for i, value in enumerate(values):
            mark = f"{_MARK}{i}{_MARK}"
            subject, body = subject.replace(mark, value), body.replace(mark, value)  # type: ignore[arg-type]
        return _clip(_one_line(subject), _SUBJECT_LIMIT), body
