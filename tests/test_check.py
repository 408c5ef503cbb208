"""`uppzy-bot check`: the staging smoke test against the simulator and the fake Slack and Discord."""

from __future__ import annotations

import json

from bots.check import run_check
from core.config import Secret, Settings
from simulator import Simulator
from tests.fakes.discord_fake import FakeDiscord
from tests.fakes.slack_fake import FakeSlack


def _settings(sim: Simulator, **overrides: object) -> Settings:
    values: dict[str, object] = {"uppzy_api_key": Secret("sim-key"), "uppzy_site_id": "demo-site",
                                 "uppzy_base_url": sim.base_url, "uppzy_tenant_id": "demo-tenant"}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


async def test_all_checks_pass_and_the_throwaway_session_is_closed(sim: Simulator) -> None:
    """With a good key every line is ✓, the chat round trip runs, and its session is closed again."""
    lines: list[str] = []
    assert await run_check(_settings(sim), print_fn=lines.append) == 0
    assert [line[0] for line in lines] == ["✓", "✓", "✓"]
    assert "tenant limits" in lines[1]
    assert len(sim.calls("chat_async")) == 1 and len(sim.calls("session_close")) == 1
    assert sim.calls("session_close")[0].body["session_id"].startswith("uppzy-bot-check-")


async def test_wrong_key_is_a_clear_cross_without_the_key(sim: Simulator) -> None:
    """A refused key gives one ✗ line that explains 401 and never prints the key; exit code 1."""
    lines: list[str] = []
    code = await run_check(_settings(sim, uppzy_api_key=Secret("sk-wrong-SECRET-987654")), print_fn=lines.append)
    assert code == 1
    assert lines[1].startswith("✗ uppzy key and reachability") and "401" in lines[1]
    assert all("sk-wrong-SECRET-987654" not in line for line in lines)
    assert len(lines) == 2  # no chat attempted after a failed key check


async def test_json_output_and_no_chat(sim: Simulator) -> None:
    """--json prints one machine-readable object; --no-chat skips the round trip (site read without a tenant)."""
    out: list[str] = []
    assert await run_check(_settings(sim, uppzy_tenant_id=None), no_chat=True, as_json=True,
                           print_fn=out.append) == 0
    report = json.loads(out[0])
    assert report["ok"] is True and [c["name"] for c in report["checks"]] == [
        "settings", "uppzy key and reachability"]
    assert sim.calls("chat_async") == [] and sim.calls("site")


async def test_slack_and_discord_checks(sim: Simulator) -> None:
    """Slack auth.test and Discord login are checked; a Discord app without Message Content is a clear ✗."""
    async with FakeSlack() as slack, FakeDiscord() as discord_fake:
        settings = _settings(sim, slack_bot_token=Secret(slack.bot_token), slack_api_base_url=slack.api_url,
                             discord_bot_token=Secret(discord_fake.token),
                             discord_api_base_url=discord_fake.api_base)
        lines: list[str] = []
        assert await run_check(settings, no_chat=True, print_fn=lines.append) == 1
        assert lines[2].startswith("✓ slack auth.test")
        assert lines[3].startswith("✗ discord login and intents") and "Message Content" in lines[3]
        discord_fake.application_flags = 1 << 18
        lines.clear()
        assert await run_check(settings, no_chat=True, print_fn=lines.append) == 0
        assert all(discord_fake.token not in line and slack.bot_token not in line for line in lines)
