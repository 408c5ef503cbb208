"""`uppzy-bot secrets rotate` as an operator runs it (a real subprocess), and secrets never in clear on disk."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from core.postgres_store import PostgresStore
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore

ROOT = Path(__file__).resolve().parents[1]
OLD = Fernet.generate_key().decode()
NEW = Fernet.generate_key().decode()
BOT_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
REFRESH_TOKEN = "xoxe-1-My0xLTIxMjM0NTY3ODktMTIzNDU2Nzg5LTEyMzQ1Njc4OS1hYmNkZWYw"
UPPZY_KEY = "uk_live_3f9a0c7e1b2d4a6c8e0f1a3b5c7d9e1f"
INSTALLATION = f'{{"bot_token": "{BOT_TOKEN}", "bot_refresh_token": "{REFRESH_TOKEN}", "team_id": "T1"}}'


def rotate(cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m bots secrets rotate` with the (cleaned) environment plus `env`."""
    return subprocess.run([sys.executable, "-m", "bots", "secrets", "rotate"], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, capture_output=True, text=True,
                          timeout=30, check=False)


def refused(result: subprocess.CompletedProcess[str], *, code: int = 2) -> str:
    """Exit `code`, one stderr line, no traceback, no key or token anywhere in the output; returns the line."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1, result
    shown = result.stdout + result.stderr
    assert "Traceback" not in shown and all(s not in shown for s in (OLD, NEW, BOT_TOKEN, UPPZY_KEY))
    return lines[0]


def clear_forms(secret: str) -> list[bytes]:
    """The secret as it would sit in a file in clear: raw, hex (either case), base64 (standard and url-safe)."""
    raw = secret.encode()
    return [raw, raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw).rstrip(b"="),
            base64.urlsafe_b64encode(raw).rstrip(b"=")]


def assert_nothing_in_clear(directory: Path, *secrets: str) -> None:
    """No file in `directory` (the database, its WAL and lock) holds any secret in any clear form."""
    files = [p for p in directory.iterdir() if p.is_file()]
    assert any(p.name.endswith(".db") for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            for form in clear_forms(secret):
                assert form not in data, f"{path.name} holds {secret[:6]}… in clear"


async def seed(db: Path) -> None:
    """Two secrets sealed with OLD and one already with NEW, as a bot on `OLD` then `NEW,OLD` left them."""
    store = await SqliteStore.open(str(db))
    try:
        old, new = SecretBox.from_setting(OLD), SecretBox.from_setting(NEW)
        await store.save_installation(None, "T1", old.seal(INSTALLATION), now=1.0)
        await store.set_credentials("slack", "T1", site_id="site-1", sealed_key=old.seal(UPPZY_KEY), now=1.0)
        await store.set_credentials("slack", "T2", site_id="site-2", sealed_key=new.seal(UPPZY_KEY + "-2"), now=1.0)
    finally:
        await store.close()


async def test_saved_secrets_are_never_in_clear_in_the_database_files(tmp_path: Path) -> None:
    """After saving sealed tokens and keys (store still open, WAL not checkpointed, and after closing), neither the
    database nor its WAL holds a token or key, nor its hex or base64."""
    db = tmp_path / "bot.db"
    box = SecretBox.from_setting(NEW)
    store = await SqliteStore.open(str(db))
    try:
        await store.save_installation("E1", None, box.seal(INSTALLATION), now=1.0)
        await store.set_credentials("discord", "G1", site_id="site", sealed_key=box.seal(UPPZY_KEY), now=1.0)
        assert_nothing_in_clear(tmp_path, BOT_TOKEN, REFRESH_TOKEN, UPPZY_KEY, NEW)
        assert box.open(await store.find_installation("E1", "T5") or "") == INSTALLATION
    finally:
        await store.close()
    assert_nothing_in_clear(tmp_path, BOT_TOKEN, REFRESH_TOKEN, UPPZY_KEY, NEW)


async def test_rotate_reencrypts_with_the_first_key_once_and_a_rerun_rewrites_nothing(tmp_path: Path) -> None:
    """`SECRETS_KEY=NEW,OLD secrets rotate`: the two OLD-sealed secrets move to NEW, one line says so; a rerun
    rewrites nothing; afterwards NEW alone opens everything, and nothing is in clear on disk."""
    db = tmp_path / "bot.db"
    await seed(db)
    env = {"DATABASE_URL": f"sqlite:///{db}", "SECRETS_KEY": f"{NEW} , {OLD}"}
    first = rotate(tmp_path, env)
    assert first.returncode == 0, first
    assert first.stdout.strip() == "2 secrets re-encrypted with the first SECRETS_KEY key (1 already were)"
    assert first.stderr == "" and OLD not in first.stdout and NEW not in first.stdout
    again = rotate(tmp_path, env)
    assert again.stdout.strip() == "0 secrets re-encrypted with the first SECRETS_KEY key (3 already were)", again
    store = await SqliteStore.open(str(db))
    try:
        only_new = SecretBox.from_setting(NEW)
        assert only_new.open(await store.find_installation(None, "T1") or "") == INSTALLATION
        assert only_new.open((await store.get_credentials("slack", "T1") or ("", ""))[1]) == UPPZY_KEY
    finally:
        await store.close()
    assert_nothing_in_clear(tmp_path, BOT_TOKEN, REFRESH_TOKEN, UPPZY_KEY)


async def test_rotate_refuses_when_the_old_key_was_dropped_too_early(tmp_path: Path) -> None:
    """SECRETS_KEY without the key a stored secret was sealed with: exit 2, one line naming SECRETS_KEY and no key."""
    db = tmp_path / "bot.db"
    await seed(db)
    line = refused(rotate(tmp_path, {"DATABASE_URL": f"sqlite:///{db}", "SECRETS_KEY": NEW}))
    assert line.startswith("uppzy-bot secrets rotate: ") and "SECRETS_KEY" in line


@pytest.mark.parametrize("value", ["", "not-a-fernet-key", f"{NEW},{OLD[:30]}"],
                         ids=["missing", "malformed", "one-bad-key"])
def test_rotate_without_a_usable_secrets_key_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        value: str) -> None:
    """Missing, malformed, or one bad key among good ones: exit 2 with one line naming SECRETS_KEY, saying how to
    generate a key, never showing the value; no database file is created."""
    monkeypatch.delenv("SECRETS_KEY", raising=False)
    db = tmp_path / "bot.db"
    line = refused(rotate(tmp_path, {"DATABASE_URL": f"sqlite:///{db}", **({"SECRETS_KEY": value} if value else {})}))
    assert "SECRETS_KEY" in line and "Fernet.generate_key()" in line
    assert "not-a-fernet-key" not in line and OLD[:30] not in line
    assert not db.exists()


async def test_rotate_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """The same rotation on PostgreSQL (replicas may keep running meanwhile)."""
    store = await PostgresStore.open(pg_url, holder="seed")
    try:
        await store.save_installation("E1", None, SecretBox.from_setting(OLD).seal(INSTALLATION), now=1.0)
    finally:
        await store.close()
    result = rotate(tmp_path, {"DATABASE_URL": pg_url, "SECRETS_KEY": f"{NEW},{OLD}"})
    assert result.stdout.strip() == "1 secrets re-encrypted with the first SECRETS_KEY key (0 already were)", result
    store = await PostgresStore.open(pg_url, holder="check")
    try:
        assert SecretBox.from_setting(NEW).open(await store.find_installation("E1", "T1") or "") == INSTALLATION
    finally:
        await store.close()
