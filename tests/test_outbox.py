"""`styrkedja outbox list|send|retry` against a real SMTP server (aiosmtpd) on SQLite and PostgreSQL:
a notification that fails while the server is down is visible with its error, a failed one is put
back by an operator (audited) and delivered exactly once when the server is up again."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cli_tables import rows_by_first_column
from smtp_server import PASSWORD, SmtpServer, local_smtp
from sqlmodel import select
from typer.testing import CliRunner, Result

from config.loader import SAMPLES, load_config
from config.schema import OrgConfig
from flows.cli import app
from models.db import session_scope
from models.tables import AuditEntry, Notification, NotificationState
from tasks.notify import MAX_ATTEMPTS, deliver_outbox, queue_notification

runner = CliRunner()
FROM = "styrkedja@norrsjo.example"
SAMPLE_URL = f'url: "mailto://127.0.0.1:${{STYRKEDJA_SMTP_PORT}}?from={FROM}"'
# The sample's e-mail channel with a login whose password comes from the environment at send time.
LOGIN_URL = f'url: "mailto://styrkedja:${{STYRKEDJA_SMTP_PASS}}@127.0.0.1:${{STYRKEDJA_SMTP_PORT}}?from={FROM}"'


@pytest.fixture
def outbox_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> str:
    monkeypatch.setenv("STYRKEDJA_HOME", str(tmp_path))
    monkeypatch.setenv("STYRKEDJA_DATABASE_URL", db_url)
    monkeypatch.setenv("STYRKEDJA_OUTPUT", str(tmp_path / "output"))
    return db_url


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpServer]:
    """Not started: each test decides when the server is up."""
    yield from local_smtp(monkeypatch, start=False, login=True)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    text = SAMPLES["region"].read_text(encoding="utf-8")
    assert SAMPLE_URL in text, "the sample's e-mail channel changed"
    path = tmp_path / "region-login.yaml"
    path.write_text(text.replace(SAMPLE_URL, LOGIN_URL, 1), encoding="utf-8")
    return path


def queue(unit: str, key: str) -> int:
    with session_scope() as s:
        row = queue_notification(
            s,
            key=key,
            recipient_unit=unit,
            channel_id="epost",
            address=f"{unit.lower()}@norrsjo.example",
            subject=f"Påminnelse till {unit}: kvittera planeringsförutsättningarna",
            body="Hej! Kvittera senast fredag 13 mars 2026.",
        )
        return int(row.id)  # type: ignore[arg-type]


def stored(nid: int) -> Notification:
    with session_scope() as s:
        row = s.get(Notification, nid)
        assert row is not None
        s.expunge(row)
        return row


def aware(at: datetime) -> datetime:
    """SQLite gives stored times back without their zone: UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def cli(*args: str, config: Path) -> Result:
    return runner.invoke(app, [*args, "--config", str(config)])


def test_a_failure_is_listed_with_its_error_and_a_retry_delivers_it_exactly_once(
    outbox_env: str, smtp: SmtpServer, config_file: Path
) -> None:
    cfg: OrgConfig = load_config(config_file)
    first = queue("HSN", "test/HSN/paminnelse")
    second = queue("KTN", "test/KTN/paminnelse")

    # 1. The mail server is down: `outbox send` tries both once, they wait for the next attempt.
    sent = cli("outbox", "send", config=config_file)
    assert sent.exit_code == 0, sent.output
    assert "sent 0, to be retried 2, failed 0" in sent.output
    listed = cli("outbox", "list", config=config_file)
    assert listed.exit_code == 0, listed.output
    rows = rows_by_first_column(listed.output)
    assert set(rows) == {str(first), str(second)}
    row = rows[str(first)]
    assert (row["unit"], row["channel"], row["state"], row["attempts"]) == ("HSN", "epost (email)", "pending", "1")
    assert row["subject"] == "Påminnelse till HSN: kvittera planeringsförutsättningarna"
    assert row["last error"].startswith("attempt 1:") and "Connection refused" in row["last error"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row["next attempt"]), row  # after the backoff
    assert "No notifications match." in cli("outbox", "list", "--state", "failed", config=config_file).output

    # 2. It stays down until the last attempt: both are failed and kept, with the last error.
    for _ in range(MAX_ATTEMPTS - 1):
        due = max(aware(stored(first).next_attempt_at), aware(stored(second).next_attempt_at))
        deliver_outbox(cfg, now=due)
    assert stored(first).state == stored(second).state == NotificationState.FAILED
    failed = cli("outbox", "list", "--state", "failed", config=config_file)
    rows = rows_by_first_column(failed.output)
    assert set(rows) == {str(first), str(second)}, failed.output
    assert rows[str(first)]["state"] == "failed" and rows[str(first)]["attempts"] == str(MAX_ATTEMPTS)
    assert rows[str(first)]["next attempt"] == "-"
    assert rows[str(first)]["last error"].startswith(f"attempt {MAX_ATTEMPTS}:")
    assert "Connection refused" in rows[str(first)]["last error"]
    only_hsn = rows_by_first_column(cli("outbox", "list", "--unit", "HSN", config=config_file).output)
    assert set(only_hsn) == {str(first)}
    assert cli("outbox", "send", config=config_file).output.startswith("sent 0, to be retried 0, failed 0")

    # 3. The server is back; the operator retries the first one: delivered once, audited.
    smtp.start()
    retried = runner.invoke(
        app,
        [
            "outbox",
            "retry",
            str(first),
            "--reason",
            "servern är uppe",
            "--actor",
            "drift",
            "--config",
            str(config_file),
        ],
    )
    assert retried.exit_code == 0, retried.output
    assert f"requeued 1: {first}" in retried.output and "sent 1," in retried.output
    assert rows_by_first_column(retried.output)[str(first)]["state"] == "sent"
    assert smtp.box.received_keys() == ["test/HSN/paminnelse"]
    assert smtp.box.mails[0].envelope_to == ["hsn@norrsjo.example"]
    assert (stored(first).state, stored(first).attempts) == (NotificationState.SENT, 1)
    assert stored(second).state == NotificationState.FAILED  # not named: left failed
    with session_scope() as s:
        entries = list(s.exec(select(AuditEntry).where(AuditEntry.action == "notification_requeued")))
    assert [(e.actor, e.subject, e.reason) for e in entries] == [("drift", "test/HSN/paminnelse", "servern är uppe")]
    assert entries[0].detail["attempts"] == MAX_ATTEMPTS and "Connection refused" in entries[0].detail["last_error"]

    # A notification that is not failed is not retried: one line, exit 2, nothing sent again.
    again = cli("outbox", "retry", str(first), config=config_file)
    assert again.exit_code == 2 and again.stdout == ""
    assert again.stderr.strip() == (
        f"error: notification {first}: state sent, not failed; only failed notifications are retried "
        "(pending ones are retried by themselves)"
    )
    assert cli("outbox", "send", config=config_file).output.startswith("sent 0,")
    assert smtp.box.received_keys() == ["test/HSN/paminnelse"]

    # 4. --all-failed --no-send puts the rest back without sending; `outbox send` delivers it, once.
    back = cli("outbox", "retry", "--all-failed", "--no-send", config=config_file)
    assert back.exit_code == 0, back.output
    assert back.output.strip() == f"requeued 1: {second}"
    assert smtp.box.received_keys() == ["test/HSN/paminnelse"]
    assert rows_by_first_column(cli("outbox", "list", "--state", "pending", config=config_file).output)[str(second)][
        "next attempt"
    ] == ("due now")
    assert cli("outbox", "send", config=config_file).output.startswith("sent 1, to be retried 0, failed 0")
    assert cli("outbox", "send", config=config_file).output.startswith("sent 0,")
    assert Counter(smtp.box.received_keys()) == Counter(["test/HSN/paminnelse", "test/KTN/paminnelse"])
    assert cli("outbox", "retry", "--all-failed", config=config_file).output.strip() == "No failed notifications."
    with session_scope() as s:
        assert len(list(s.exec(select(AuditEntry).where(AuditEntry.action == "notification_requeued")))) == 2


def test_a_server_reply_with_the_password_is_listed_masked(
    outbox_env: str, smtp: SmtpServer, config_file: Path
) -> None:
    smtp.box.mode = "auth_echo"  # refuses the login with a reply that repeats the password
    smtp.start()
    nid = queue("HSN", "test/HSN/losen")
    assert "to be retried 1" in cli("outbox", "send", config=config_file).output
    assert smtp.box.logins and smtp.box.logins[0][1] == PASSWORD  # the server did see it
    listed = cli("outbox", "list", "--state", "pending", config=config_file)
    error = rows_by_first_column(listed.output)[str(nid)]["last error"]
    assert "535" in error and "***" in error
    flat = re.sub(r"\s+", "", listed.output)
    for secret in (PASSWORD, "Hemligt", "p@ss", "p%40ss"):
        assert secret not in listed.output and secret not in flat


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["outbox", "list", "--state", "lost"], "--state: unknown state 'lost' (known: pending, sent, failed)"),
        (["outbox", "list", "--unit", "NOPE"], "--unit: unknown unit 'NOPE'"),
        (["outbox", "retry"], "outbox retry: name the notification id(s) or give --all-failed (not both)"),
        (["outbox", "retry", "1", "--all-failed"], "outbox retry: name the notification id(s) or give --all-failed"),
        (["outbox", "retry", "424242"], "notification: no notification with id 424242"),
    ],
)
def test_outbox_mistakes_are_one_line_and_exit_2(
    outbox_env: str, smtp: SmtpServer, config_file: Path, args: list[str], text: str
) -> None:
    nid = queue("HSN", "test/HSN/mistake")
    result = cli(*args, config=config_file)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and text in lines[0] and lines[0].startswith("error:")
    row = stored(nid)
    assert (row.state, row.attempts) == (NotificationState.PENDING, 0)  # nothing sent, nothing changed
    assert smtp.box.mails == []


def test_outbox_list_shows_the_latest_rows_when_limited(outbox_env: str, smtp: SmtpServer, config_file: Path) -> None:
    ids = [queue("HSN", f"test/HSN/{i}") for i in range(5)]
    result = cli("outbox", "list", "--limit", "2", config=config_file)
    assert result.exit_code == 0, result.output
    assert "Outbox: the latest 2 of 5" in result.output
    assert list(rows_by_first_column(result.output)) == [str(i) for i in ids[-2:]]
