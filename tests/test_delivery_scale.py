"""A phase run delivers every message it records: with 1,200 recipients nothing is left pending in
the outbox when the run ends (no cap per run), and a channel that is down does not hold up the one
that works. Real Prefect API, real local SMTP server."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from smtp_server import SmtpServer, _free_port, local_smtp
from sqlmodel import select
from test_follow_up_chain import _trimmed_config

from flows.registry import PHASE_FLOWS
from models.db import session_scope
from models.tables import Notification, NotificationState
from tasks.notify import KEY_HEADER

YEAR = 2028
RECIPIENTS = 1_200


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    yield from local_smtp(monkeypatch)


def _many_recipients(tmp: Path) -> tuple[Path, int]:
    """The trimmed sample with 1,200 signatories (each gets the document by e-mail) spread over all
    committees but one; that one's e-mail goes through a second channel whose server is down."""
    path = _trimmed_config(tmp)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    dead_port = _free_port()  # nothing listens there
    data["channels"].append(
        {"id": "epost_nere", "kind": "email", "url": f"mailto://127.0.0.1:{dead_port}?from=styrkedja@alvbacka.example"}
    )
    *working, down = [u for u in data["units"] if u["level"] == "committee"]
    per = -(-RECIPIENTS // len(working))
    for u in working:
        u["signatories"] = [
            {
                "id": f"{u['id'].lower()}_{i:04d}",
                "name": f"Ledamot {i} {u['name']}",
                "email": f"{u['id'].lower()}.{i:04d}@alvbacka.example",
            }
            for i in range(per)
        ]
    down["contacts"] = [{"channel": "epost_nere", "address": f"{down['id'].lower()}@nere.example"}]
    down["signatories"] = [
        {"id": f"{down['id'].lower()}_{i}", "name": f"Ledamot {i}", "email": f"{down['id'].lower()}.{i}@nere.example"}
        for i in range(5)
    ]
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path, per * len(working)


def test_a_phase_run_with_1200_recipients_leaves_nothing_pending(prefect_api, app_env: Path, smtp: SmtpServer):
    config, working = _many_recipients(app_env)
    assert working >= RECIPIENTS
    result = PHASE_FLOWS["planning_prerequisites"](
        year=YEAR, config=str(config), wait=False, override=True, reason="Test av utskick i stor skala"
    )

    with session_scope() as s:
        rows = list(s.exec(select(Notification)))
    by_channel = Counter((r.channel_id, r.state) for r in rows)
    assert by_channel[("epost", NotificationState.PENDING)] == 0
    assert by_channel[("epost", NotificationState.SENT)] >= working
    assert result["notifications_sent"] == sum(n for (_, state), n in by_channel.items() if state == "sent")
    # The channel that is down was tried (its breaker opened) and waits for its backoff; it did
    # not keep the working channel's messages in the outbox.
    dead = [r for r in rows if r.channel_id == "epost_nere"]
    assert dead and all(r.state == NotificationState.PENDING for r in dead)
    assert any(r.last_error and "attempt 1" in r.last_error for r in dead)

    # Each message arrived once, at its own address.
    keys = Counter(str(m.message[KEY_HEADER]) for m in smtp.box.mails)
    assert set(keys.values()) == {1}
    assert set(keys) == {r.key for r in rows if r.channel_id == "epost"}
    addresses = {a for m in smtp.box.mails for a in m.envelope_to}
    assert len({a for a in addresses if a.endswith("@alvbacka.example")}) >= RECIPIENTS
