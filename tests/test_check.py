"""`uppzy-bot check`: the staging smoke test against the simulator and the fake Slack and Discord."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bots.check import run_check
from core.config import Secret, Settings
from simulator import Simulator
from tests.fakes.discord_fake import FakeDiscord
from tests.fakes.slack_fake import FakeSlack

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    """A FakeSlack, so the configuration has a platform (Socket Mode) as `run` requires."""
    async with FakeSlack() as fake:
        yield fake


def _settings(sim: Simulator, slack: FakeSlack | None = None, **overrides: object) -> Settings:
    values: dict[str, object] = {"uppzy_api_key": Secret("sim-key"), "uppzy_site_id": "demo-site",
                                 "uppzy_base_url": sim.base_url, "uppzy_tenant_id": "demo-tenant"}
    if slack is not None:
        values.update(slack_bot_token=Secret(slack.bot_token), slack_app_token=Secret(slack.app_token),
                      slack_api_base_url=slack.api_url)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def test_all_checks_pass_and_the_throwaway_session_is_closed(sim: Simulator, slack: FakeSlack) -> None:
    """With a good key every line is ✓, the chat round trip runs, and its session is closed again."""
    lines: list[str] = []
    assert await run_check(_settings(sim, slack), print_fn=lines.append) == 0
    assert [line[0] for line in lines] == ["✓", "✓", "✓", "✓"]
    assert "tenant limits" in lines[1]
    assert len(sim.calls("chat_async")) == 1 and len(sim.calls("session_close")) == 1
    assert sim.calls("session_close")[0].body["session_id"].startswith("uppzy-bot-check-")


async def test_wrong_key_is_a_clear_cross_without_the_key(sim: Simulator, slack: FakeSlack) -> None:
    """A refused key gives one ✗ line that explains 401 and never prints the key; exit code 1."""
    lines: list[str] = []
    code = await run_check(_settings(sim, slack, uppzy_api_key=Secret("sk-wrong-SECRET-987654")),
                           print_fn=lines.append)
    assert code == 1
    assert lines[1].startswith("✗ uppzy key and reachability") and "401" in lines[1]
    assert all("sk-wrong-SECRET-987654" not in line for line in lines)
    assert len(lines) == 3 and lines[2].startswith("✓ slack")  # no chat attempted after a failed key check


async def test_json_output_and_no_chat(sim: Simulator, slack: FakeSlack) -> None:
    """--json prints one machine-readable object; --no-chat skips the round trip (site read without a tenant)."""
    out: list[str] = []
    assert await run_check(_settings(sim, slack, uppzy_tenant_id=None), no_chat=True, as_json=True,
                           print_fn=out.append) == 0
    report = json.loads(out[0])
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == [
        "settings", "uppzy key and reachability", "slack auth.test and scopes"]
    assert sim.calls("chat_async") == [] and sim.calls("site")


async def test_slack_and_discord_checks(sim: Simulator) -> None:
    """Slack auth.test and Discord login are checked; a Discord app without Message Content is a clear ✗."""
    async with FakeSlack() as slack, FakeDiscord() as discord_fake:
        settings = _settings(sim, slack_bot_token=Secret(slack.bot_token), slack_api_base_url=slack.api_url,
                             slack_app_token=Secret(slack.app_token), discord_bot_token=Secret(discord_fake.token),
                             discord_api_base_url=discord_fake.api_base)
        lines: list[str] = []
        assert await run_check(settings, no_chat=True, print_fn=lines.append) == 1
        assert lines[2].startswith("✓ slack auth.test")
        assert lines[3].startswith("✗ discord login and intents") and "Message Content" in lines[3]
        discord_fake.application_flags = 1 << 18
        lines.clear()
        assert await run_check(settings, no_chat=True, print_fn=lines.append) == 0
        assert all(discord_fake.token not in line and slack.bot_token not in line for line in lines)
        http_mode = replace(settings, slack_app_token=None)  # HTTP mode without a signing secret: run would refuse
        lines.clear()
        assert await run_check(http_mode, no_chat=True, print_fn=lines.append) == 1
        assert lines[2].startswith("✗ slack") and "SLACK_SIGNING_SECRET" in lines[2]


async def test_no_platform_configured_is_a_cross_saying_run_would_refuse(sim: Simulator) -> None:
    """Uppzy alone passes, but without SLACK_BOT_TOKEN or DISCORD_BOT_TOKEN check says `run` would refuse; exit 1."""
    lines: list[str] = []
    assert await run_check(_settings(sim), no_chat=True, print_fn=lines.append) == 1
    assert lines[1].startswith("✗ platforms") and "SLACK_BOT_TOKEN" in lines[1] and "DISCORD_BOT_TOKEN" in lines[1]
    assert "would refuse" in lines[1]
    assert lines[2].startswith("✓ uppzy key")


async def test_unreachable_platforms_and_uppzy_name_the_url_and_setting_with_credentials_masked(
        sim: Simulator) -> None:
    """Nobody answers at the configured URLs: each ✗ names the setting and the URL, with user:password masked."""
    dead = "http://user:s3cr3t-pw@127.0.0.1:9"
    settings = _settings(sim, uppzy_base_url=f"{dead}/api/v1", slack_bot_token=Secret("xoxb-1-2-SECRETslack"),
                         slack_app_token=Secret("xapp-1-SECRET"), slack_api_base_url=f"{dead}/api/",
                         discord_bot_token=Secret("discord-SECRET"), discord_api_base_url=f"{dead}/api/v10")
    lines: list[str] = []
    assert await run_check(settings, print_fn=lines.append) == 1
    uppzy, slack_line, discord_line = lines[1:]
    assert uppzy.startswith("✗ uppzy") and "UPPZY_BASE_URL" in uppzy and "http://***@127.0.0.1:9/api/v1" in uppzy
    assert slack_line.startswith("✗ slack") and "SLACK_API_BASE_URL" in slack_line
    assert "http://***@127.0.0.1:9/api/" in slack_line
    assert discord_line.startswith("✗ discord") and "DISCORD_API_BASE_URL" in discord_line
    assert "http://***@127.0.0.1:9/api/v10" in discord_line
    assert all("s3cr3t" not in line and "SECRET" not in line for line in lines), lines


async def test_slack_5xx_is_an_outage_not_a_token_problem(sim: Simulator, slack: FakeSlack) -> None:
    """auth.test answering 503 is a ✗ naming the HTTP status and the URL, not 'check SLACK_BOT_TOKEN'."""
    slack.fail_next("auth.test", error="service_unavailable", status=503)
    lines: list[str] = []
    assert await run_check(_settings(sim, slack), no_chat=True, print_fn=lines.append) == 1
    assert "HTTP 503" in lines[2] and slack.api_url in lines[2] and "SLACK_BOT_TOKEN" not in lines[2]


async def test_the_check_command_prints_only_its_report(sim: Simulator, slack: FakeSlack, tmp_path: Path) -> None:
    """`python -m bots check` with LOG_LEVEL=INFO (as a .env for `run` would set): stdout is the report, one line
    per check, and stderr is empty (no httpx request lines, no retry warnings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_"))}
    env.update(PYTHONPATH=str(ROOT), LOG_LEVEL="INFO", UPPZY_API_KEY="sim-key", UPPZY_SITE_ID="demo-site",
               UPPZY_BASE_URL=sim.base_url, SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token,
               SLACK_API_BASE_URL=slack.api_url, DISCORD_BOT_TOKEN="discord-token",
               DISCORD_API_BASE_URL="http://127.0.0.1:9/api/v10")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bots", "check", "--no-chat", cwd=tmp_path,
                                                env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    lines = stdout.decode().splitlines()
    assert proc.returncode == 1 and stderr.decode() == "", stderr.decode()
    assert [line[0] for line in lines] == ["✓", "✓", "✓", "✗"], lines
    assert "DISCORD_API_BASE_URL" in lines[3]
