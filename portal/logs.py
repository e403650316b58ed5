"""The access log never holds a link's token: its path is written as /l/… instead."""

from __future__ import annotations

import logging
import re
from typing import Any

from tasks.portal_tokens import TOKEN_PATH

_TOKEN = re.compile(re.escape(TOKEN_PATH) + r"[^\s\"?]+")


def redact(text: str) -> str:
    return _TOKEN.sub(TOKEN_PATH + "…", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging, with the token filter on the access log."""
    from uvicorn.config import LOGGING_CONFIG

    cfg: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in LOGGING_CONFIG.items()}
    cfg["filters"] = {"redact_tokens": {"()": "portal.logs.RedactTokens"}}
    handlers = {k: dict(v) for k, v in cfg["handlers"].items()}
    handlers["access"]["filters"] = ["redact_tokens"]
    cfg["handlers"] = handlers
    return cfg
