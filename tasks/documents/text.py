"""Jinja2 rendering of document texts.

Built-in templates live in templates/docs/; an organisation may override any of them by putting
a file of the same name in the folder named by the environment variable STYRKEDJA_TEMPLATE_DIR.
Organisations edit the built-in files too, so neither kind is trusted code: both render in the
same ImmutableSandboxedEnvironment subclass with the same options — StrictUndefined, autoescape
off (lxml escapes XML; a Word document is not HTML), a cap on output size, capped range(),
guarded string amplifiers and a time budget — and every error becomes a one-line `UserError`
naming the template file, the line and the problem. The sandbox about doubles the time spent in
Jinja2 (the sample region's 130 documents: 19 ms instead of 10 ms, measured in one process),
which is small next to building the content (0.5 s) and writing the documents.
"""

from __future__ import annotations

import contextvars
import functools
import os
import re
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

import templates
from models.errors import UserError
from tasks.documents.sanitize import clean_text
from tasks.swedish import long_date

TEMPLATE_DIR_ENV = "STYRKEDJA_TEMPLATE_DIR"
BUILTIN_DIR = Path(templates.__file__).resolve().parent / "docs"

# Limits for organisation templates. Characters, counted while streaming.
MAX_OUTPUT_CHARS = 2_000_000
MAX_RANGE = 10_000
MAX_SECONDS = 10.0
# Widths and counts passed to padding functions and filters (center, indent, batch, …).
MAX_WIDTH = 10_000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.j2$")

# ---------------------------------------------------------------------------
# Swedish formatting, shared by the templates and the table builders
# ---------------------------------------------------------------------------

NBSP = "\u00a0"


def datum(d: date | None) -> str:
    """10 februari 2028"""
    if d is None:
        return ""
    return long_date(d)


def iso(d: date | None) -> str:
    return "" if d is None else d.isoformat()


def tal(n: float | int | None, decimals: int = 0) -> str:
    """Swedish number: non-breaking space between thousands, decimal comma."""
    if n is None:
        return ""
    text = f"{n:,.{decimals}f}"
    return text.replace(",", NBSP).replace(".", ",")


def tkr(n: float | int | None) -> str:
    return "" if n is None else f"{tal(n)}{NBSP}tkr"


def procent(x: float | int | None, decimals: int = 1) -> str:
    return "" if x is None else f"{tal(x, decimals)}{NBSP}%"


def label(s: object) -> str:
    """Text that can stand inside a [[field:name|label|guide]] directive."""
    return str(s).replace("|", "/").replace("[", "(").replace("]", ")")


FILTERS: dict[str, Callable[..., str]] = {
    "label": label,
    "datum": datum,
    "iso": iso,
    "tal": tal,
    "tkr": tkr,
    "procent": procent,
}


def _finalize(value: object) -> object:
    # Every {{ value }} is cleaned of characters XML cannot hold. Newlines stay: macros return
    # multi-line markup. Values from the configuration are flattened to one line when the
    # context is built, so that they cannot start a heading or directive line of their own.
    if value is None:
        return ""
    if isinstance(value, str):
        return clean_text(value)
    return value


_COMMON = {
    "undefined": jinja2.StrictUndefined,
    "autoescape": False,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "keep_trailing_newline": True,
    "finalize": _finalize,
}


# ---------------------------------------------------------------------------
# Built-in templates
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _builtin_env(folder: str) -> _Sandbox:
    # auto_reload off: the built-ins change with a new release or an edit between runs, not while
    # a process renders, so compiled templates are cached without a stat per render.
    return _Sandbox(loader=jinja2.FileSystemLoader(folder), auto_reload=False, cache_size=400, **_COMMON)


def render_builtin(name: str, context: Mapping[str, Any]) -> str:
    """Render a built-in template (templates/docs/) in the sandbox.

    Raises UserError("template <file>, line <n>: <problem>") for any failure.
    """
    folder = BUILTIN_DIR
    return _render_sandboxed(_builtin_env(str(folder)), folder, name, context)


def _check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(f"invalid template name {name!r}: expected a file name ending in .j2")
    return name


# ---------------------------------------------------------------------------
# Organisation templates (sandboxed)
# ---------------------------------------------------------------------------


def override_dir() -> Path | None:
    value = os.environ.get(TEMPLATE_DIR_ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def user_template(name: str) -> Path | None:
    """The organisation's override of a built-in template, if there is one."""
    folder = override_dir()
    if folder is None:
        return None
    path = folder / _check_name(name)
    return path if path.is_file() else None


def render(name: str, context: Mapping[str, Any]) -> str:
    """Render `name`: the organisation's override if present (sandboxed), else the built-in."""
    path = user_template(name)
    if path is None:
        return render_builtin(name, context)
    return render_user(path.parent, name, context)


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("styrkedja_tpl_deadline")


class _LimitError(SecurityError):
    """A sandbox limit was hit; the message says which."""


def _check_time() -> None:
    if time.monotonic() > _deadline.get(float("inf")):
        raise _LimitError(f"template took longer than {MAX_SECONDS:g} seconds")


class _GuardedRange:
    """range() for the sandbox: capped in length, and checks the time budget while iterating,
    so that nested loops over a saved range cannot run for hours without output."""

    __slots__ = ("_r",)

    def __init__(self, *args: int) -> None:
        r = range(*args)
        if len(r) > MAX_RANGE:
            raise _LimitError(f"range() of {len(r)} items; at most {MAX_RANGE} allowed")
        self._r = r

    def __iter__(self) -> Iterator[int]:
        for i, value in enumerate(self._r):
            if not i & 255:
                _check_time()
            yield value

    def __len__(self) -> int:
        return len(self._r)

    def __getitem__(self, index: int) -> int:
        return self._r[index]

    def __contains__(self, value: object) -> bool:
        return value in self._r


_PADDING_METHODS = {"ljust", "rjust", "center", "zfill", "expandtabs"}
_BIG_FORMAT_WIDTH = re.compile(r"\{[^{}]*:[^{}]*\d{5,}|%[-#0 +]*(?:\*|\d{5,})|%[^%]*\.(?:\*|\d{5,})")


def _sized(value: object) -> object:
    if isinstance(value, str | list | tuple | bytes) and len(value) > MAX_OUTPUT_CHARS:
        raise _LimitError(f"a value of {len(value)} items; at most {MAX_OUTPUT_CHARS} allowed")
    return value


def _guard_filter(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)  # keeps jinja_pass_arg, so pass_context filters still work
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_time()
        # Filters take the value first; the rest are options. No legitimate option is a huge
        # number, but center/indent/batch/slice allocate in proportion to one.
        for arg in (*args[1:], *kwargs.values()):
            if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_WIDTH:
                raise _LimitError(f"filter argument {arg} too large; at most {MAX_WIDTH}")
        return _sized(func(*args, **kwargs))

    return guarded


_format_filter_original = jinja2.filters.FILTERS["format"]


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _GuardedRange
        # lipsum(n=…) generates arbitrary amounts of text; an organisation has no need for it.
        self.globals.pop("lipsum", None)
        self.filters.update(FILTERS)
        self.filters = {name: _guard_filter(f) for name, f in self.filters.items()}
        self.filters["format"] = _guard_filter(_checked_format)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _check_time()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(n, int)
                    and len(seq) * max(n, 0) > MAX_OUTPUT_CHARS
                ):
                    raise _LimitError("repeating a sequence beyond the output limit")
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > 1024:
                raise _LimitError(f"exponent {right} too large; at most 1024")
        elif operator == "%":
            if isinstance(left, str) and _BIG_FORMAT_WIDTH.search(left):
                raise _LimitError("format width too large")
        elif (
            operator == "+"
            and isinstance(left, str | list | tuple)
            and isinstance(right, str | list | tuple)
            and len(left) + len(right) > MAX_OUTPUT_CHARS
        ):
            raise _LimitError("joining values beyond the output limit")
        return _sized(super().call_binop(context, operator, left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _check_time()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            name = getattr(__obj, "__name__", "")
            if name in _PADDING_METHODS:
                for arg in (*args, *kwargs.values()):
                    if isinstance(arg, int) and arg > MAX_WIDTH:
                        raise _LimitError(f"width {arg} too large; at most {MAX_WIDTH}")
            elif name == "replace" and len(args) >= 2:
                old, new = str(args[0]), str(args[1])
                times = len(owner) + 1 if not old else len(owner) // len(old)
                if len(owner) + times * len(new) > MAX_OUTPUT_CHARS:
                    raise _LimitError("replace() result beyond the output limit")
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        owner = getattr(value, "__self__", None)
        if isinstance(owner, str) and _BIG_FORMAT_WIDTH.search(owner):
            raise _LimitError("format width too large")
        return super().wrap_str_format(value)


def _checked_format(value: str, *args: Any, **kwargs: Any) -> str:
    if isinstance(value, str) and _BIG_FORMAT_WIDTH.search(value):
        raise _LimitError("format width too large")
    return _format_filter_original(value, *args, **kwargs)


@functools.lru_cache(maxsize=8)
def _sandbox_env(folder: str) -> _Sandbox:
    # The override folder first, then the built-ins, so an override can import the built-in
    # macros. auto_reload stays on: an organisation edits its templates while the system runs.
    loader = jinja2.ChoiceLoader([jinja2.FileSystemLoader(folder), jinja2.FileSystemLoader(BUILTIN_DIR)])
    return _Sandbox(loader=loader, cache_size=400, **_COMMON)


def render_user(folder: Path, name: str, context: Mapping[str, Any]) -> str:
    """Render an organisation template from `folder` in the sandbox.

    Raises UserError("template <file>, line <n>: <problem>") for any failure.
    """
    return _render_sandboxed(_sandbox_env(str(folder)), Path(folder), name, context)


def _render_sandboxed(env: _Sandbox, folder: Path, name: str, context: Mapping[str, Any]) -> str:
    file = str(folder / _check_name(name))
    token = _deadline.set(time.monotonic() + MAX_SECONDS)
    try:
        template = env.get_template(name)
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise _LimitError(f"output larger than {MAX_OUTPUT_CHARS} characters")
            _check_time()
            parts.append(chunk)
        return "".join(parts)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or file
        raise UserError(f"template {where}, line {exc.lineno}: {exc.message}") from None
    except (Exception, RecursionError) as exc:
        where, line = _location(exc, file)
        raise UserError(f"template {where}, line {line}: {_problem(exc)}") from None
    finally:
        _deadline.reset(token)


def _location(exc: BaseException, default_file: str) -> tuple[str, int | str]:
    # Jinja rewrites tracebacks so that template frames carry the template's file and line;
    # the innermost such frame is where the problem is.
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return frame.filename, frame.lineno or "?"
    return default_file, "?"


def _problem(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "recursion too deep (a macro or include that calls itself?)"
    if isinstance(exc, jinja2.TemplateError):
        return exc.message or type(exc).__name__
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------
# Checking organisation templates before a phase writes anything
# ---------------------------------------------------------------------------


def check_overrides(cfg: Any, plan_year: int, phase_id: str, occasion: str | None = None) -> int:
    """Render, in memory, one document of every kind the phase sends when the organisation has
    templates of its own: a template that cannot render (sandbox escape, runaway loop, output
    bomb, undefined variable, broken markup) is refused as one `UserError` before the phase
    sets up its cycle or writes a file. Returns the number of documents checked (0 without
    organisation templates)."""
    folder = override_dir()
    if folder is None:
        return 0
    if not folder.is_dir():
        raise UserError(f"{TEMPLATE_DIR_ENV}: {str(folder)!r} is not a folder")
    if not any(folder.glob("*.j2")):
        return 0
    # catalog imports this module; importing it at the top would be a cycle.
    from tasks.documents import catalog, word

    checked: set[str] = set()
    for req in catalog.documents_for_phase(cfg, plan_year, phase_id, occasion=occasion):
        if req.kind in checked:
            continue
        checked.add(req.kind)
        try:
            exp = catalog.expected(cfg, plan_year, req)
            if exp.markup is not None:
                word.build_docx(exp.meta, exp.markup, exp.tables)
        except UserError as exc:
            if str(exc).startswith("template "):
                raise
            # Markup problems name a line of the rendered text: say which templates made it.
            raise UserError(f"templates in {str(folder)!r}, document {req.kind!r}: {exc}") from None
    return len(checked)
