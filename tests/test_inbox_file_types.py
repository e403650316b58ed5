"""A name swapped for a FIFO or a link after the checks is refused, never read or waited on."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from models.errors import UserError
from tasks.returns import read_limited


def _read_in_thread(path: Path) -> list[BaseException | bytes]:
    out: list[BaseException | bytes] = []

    def run() -> None:
        try:
            out.append(read_limited(path))
        except BaseException as exc:  # noqa: BLE001 - the test inspects what was raised
            out.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), f"read_limited blocked on {path.name}"
    return out


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-dev-zero"])
def test_swapped_after_checks_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    path = tmp_path / "svar.xlsx"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    real = tmp_path / "real.xlsx"
    real.write_bytes(b"PK")
    # The race: the checks saw a regular file; by the open the name is something else.
    monkeypatch.setattr(Path, "lstat", lambda self: os.lstat(real))
    monkeypatch.setattr(Path, "is_file", lambda self: True)
    monkeypatch.setattr(Path, "is_symlink", lambda self: False)
    out = _read_in_thread(path)
    assert len(out) == 1 and isinstance(out[0], UserError), out
    assert str(out[0]) == "svar.xlsx: är ingen vanlig fil (en mapp eller en länk tas inte emot)"


def test_regular_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "svar.docx"
    path.write_bytes(b"PK\x03\x04innehall")
    assert read_limited(path) == b"PK\x03\x04innehall"
