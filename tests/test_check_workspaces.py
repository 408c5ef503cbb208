"""`uppzy-bot check --workspaces`: every stored workspace connection's key opened and checked against its site (the
simulator with extra keys), one line each, no key printed, exit 1 when any fails."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bots.check import run_check
from core.config import Secret, Settings
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore
from simulator import Simulator
from tests.fakes.slack_fake import FakeSlack

ROOT = Path(__file__).resolve().parents[1]
KEY_B, KEY_C = "sk-live-bbbb-1234abcd", "sk-live-cccc-5678efgh"
REVOKED = "sk-revoked-0000-9999zz"
ALL_KEYS = (KEY_B, KEY_C, REVOKED)


@pytest.fixture
async def sim(make_sim: Callable[..., Any]) -> Simulator:
    """Two extra keys, each bound to its own site."""
    return await make_sim(keys={KEY_B: ("site-b",), KEY_C: ("site-c",)})


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A platform for the report's usual lines."""
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
def secrets_key() -> str:
    """A fresh SECRETS_KEY."""
    return Fernet.generate_key().decode()


async def _connect(db: Path, secrets_key: str, rows: list[tuple[str, str, str, str]]) -> None:
    """Store connections as the Connector would (sealed), straight into the SQLite file."""
    box = SecretBox([secrets_key])
    store = await SqliteStore.open(str(db))
    try:
        for platform, workspace, site, key in rows:
            await store.set_credentials(platform, workspace, site_id=site, sealed_key=box.seal(key), now=1.0)
    finally:
        await store.close()


def _settings(sim: Simulator, slack: FakeSlack, db: Path, secrets_key: str | None) -> Settings:
    return Settings(uppzy_api_key=Secret("sim-key"), uppzy_site_id="demo-site", uppzy_base_url=sim.base_url,
                    slack_bot_token=Secret(slack.bot_token), slack_app_token=Secret(slack.app_token),
                    slack_api_base_url=slack.api_url, database_url=f"sqlite:///{db}",
                    secrets_key=Secret(secrets_key) if secrets_key else None)


async def test_each_connection_gets_a_line_and_a_bad_one_fails_the_check(sim: Simulator, slack: FakeSlack,
                                                                         tmp_path: Path, secrets_key: str) -> None:
    """Good keys ✓, a revoked key (401) and a key on a site it cannot use (404) ✗ with why; no key printed."""
    db = tmp_path / "bot.db"
    await _connect(db, secrets_key, [("slack", "T1", "site-b", KEY_B), ("discord", "42", "site-c", KEY_C),
                                     ("slack", "T2", "site-b", REVOKED), ("slack", "T3", "site-b", KEY_C)])
    lines: list[str] = []
    assert await run_check(_settings(sim, slack, db, secrets_key), no_chat=True, workspaces=True,
                           print_fn=lines.append) == 1
    mine = [line for line in lines if " workspace " in line]
    assert [line[:2] + line.split(" (")[0].split("workspace ")[1] for line in mine] == [
        "✓ discord 42 site site-c", "✓ slack T1 site site-b", "✗ slack T2 site site-b", "✗ slack T3 site site-b"]
    assert "refused this API key (401)" in mine[2] and "cannot use site site-b (404)" in mine[3]
    assert all(key not in line for key in ALL_KEYS for line in lines)
    assert [line[0] for line in lines if " workspace " not in line] == ["✓", "✓", "✓"]  # the usual checks passed


async def test_all_good_is_exit_0_and_json_lists_them(sim: Simulator, slack: FakeSlack, tmp_path: Path,
                                                      secrets_key: str) -> None:
    """Every key accepted: exit 0; --json has one entry per workspace."""
    db = tmp_path / "bot.db"
    await _connect(db, secrets_key, [("slack", "T1", "site-b", KEY_B)])
    out: list[str] = []
    assert await run_check(_settings(sim, slack, db, secrets_key), no_chat=True, workspaces=True, as_json=True,
                           print_fn=out.append) == 0
    report = json.loads(out[0])
    assert report["ok"] and report["checks"][-1]["name"] == "workspace slack T1 site site-b"
    assert KEY_B not in out[0]


async def test_no_connections_and_no_secrets_key(sim: Simulator, slack: FakeSlack, tmp_path: Path,
                                                 secrets_key: str) -> None:
    """None stored: one ✓ saying so. Connections but no SECRETS_KEY: one ✗ saying the keys cannot be opened."""
    db = tmp_path / "bot.db"
    lines: list[str] = []
    assert await run_check(_settings(sim, slack, db, secrets_key), no_chat=True, workspaces=True,
                           print_fn=lines.append) == 0
    assert "no workspace is connected to its own Uppzy key" in lines[-1]
    lines.clear()
    assert await run_check(_settings(sim, slack, db, None), no_chat=True, workspaces=True,
                           print_fn=lines.append) == 1
    assert lines[-1].startswith("✗ workspaces") and "SECRETS_KEY is not set" in lines[-1]
    lines.clear()
    await _connect(db, secrets_key, [("slack", "T1", "site-b", KEY_B)])
    other = Fernet.generate_key().decode()
    assert await run_check(_settings(sim, slack, db, other), no_chat=True, workspaces=True,
                           print_fn=lines.append) == 1
    assert "cannot be decrypted with SECRETS_KEY" in lines[-1]


async def test_the_command_line_flag(sim: Simulator, slack: FakeSlack, tmp_path: Path, secrets_key: str) -> None:
    """`python -m bots check --no-chat --workspaces` prints the workspace lines, exit 1 on a refused key, no key
    on stdout or stderr."""
    db = tmp_path / "bot.db"
    await _connect(db, secrets_key, [("slack", "T1", "site-b", KEY_B), ("slack", "T2", "site-b", REVOKED)])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_", "SECRETS_"))}
    env.update(PYTHONPATH=str(ROOT), LOG_LEVEL="DEBUG", UPPZY_API_KEY="sim-key", UPPZY_SITE_ID="demo-site",
               UPPZY_BASE_URL=sim.base_url, SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token,
               SLACK_API_BASE_URL=slack.api_url, DATABASE_URL=f"sqlite:///{db}", SECRETS_KEY=secrets_key)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bots", "check", "--no-chat", "--workspaces",
                                                cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    text = stdout.decode() + stderr.decode()
    assert proc.returncode == 1, text
    assert "✓ workspace slack T1 site site-b" in text and "✗ workspace slack T2 site site-b" in text
    assert all(key not in text for key in ALL_KEYS)
