"""'Add to Slack' distribution end to end: bolt's OAuth flow on our stores through FakeSlack's OAuth v2, each team
answered with its own token, forged/expired/reused states refused, uninstall, restart, no token in clear on disk."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from cryptography.fernet import Fernet

from bots.runner import build_relay, build_slack_distribution
from bots.slack.app import SlackBot
from core.backoff import Backoff
from core.config import Secret, Settings
from core.latency import LatencyModel
from core.relay import Relay
from core.sqlite_store import SqliteStore
from core.tuning import Tuning
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.conftest import SIM_KEY, SITE_ID
from tests.fakes.slack_fake import FakeSlack, sign
from tests.slack_support import parse_manifest

ROOT = Path(__file__).resolve().parents[2]
KEY = Fernet.generate_key().decode()


@dataclass
class Running:
    """One bot in OAuth mode, serving HTTP on `base`."""

    bot: SlackBot
    relay: Relay
    store: SqliteStore
    base: str


Start = Callable[..., Awaitable[Running]]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)


def _settings(fake: FakeSlack, **overrides: Any) -> Settings:
    return Settings(**{
        "uppzy_api_key": Secret(SIM_KEY), "uppzy_site_id": SITE_ID, "slack_client_id": fake.client_id,
        "slack_client_secret": Secret(fake.client_secret), "slack_signing_secret": Secret(fake.signing_secret),
        "slack_api_base_url": fake.api_url, "secrets_key": Secret(KEY), **overrides,
    })


@pytest.fixture
async def start(fake: FakeSlack, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[Start]:
    """Factory: start the real bot in OAuth mode on a SQLite file (the same file again = a restart)."""
    running: list[Running] = []

    async def factory(db: str = "bot.db") -> Running:
        settings = _settings(fake)
        store = await SqliteStore.open(str(tmp_path / db))
        relay = build_relay(settings, store, uppzy, tuning=Tuning(
            poll_interval=0.05, delivery=Backoff(attempts=3, initial=0.2, maximum=0.5),
            latency=LatencyModel(prior=(0.05,), floor=0.05), first_poll_floor=0.05))
        bot = build_slack_distribution(settings, relay, store)
        assert isinstance(bot, SlackBot)
        await relay.start(reaper=False)
        await bot.start()
        port = await bot.serve_http("127.0.0.1", 0)
        running.append(Running(bot, relay, store, f"http://127.0.0.1:{port}"))
        return running[-1]

    yield factory
    for item in reversed(running):
        await stop(item)


async def stop(item: Running) -> None:
    await item.bot.stop()
    await item.relay.stop()
    await item.store.close()


async def _install_page(base: str) -> tuple[dict[str, list[str]], str]:
    """GET /slack/install: the "Add to Slack" link's query and the state cookie bolt set."""
    async with aiohttp.ClientSession() as session, session.get(base + "/slack/install") as r:
        assert r.status == 200, await r.text()
        page = await r.text()
        cookie = r.headers["Set-Cookie"].split(";")[0]
    assert "Add to Slack" in page or "add_to_slack" in page
    link = html.unescape(re.search(r'href="(https?://[^"]*authorize[^"]*)"', page).group(1))  # type: ignore[union-attr]
    return parse_qs(urlparse(link).query), cookie


async def _redirect(base: str, code: str, state: str, cookie: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(
            f"{base}/slack/oauth_redirect", params={"code": code, "state": state}, headers={"Cookie": cookie}) as r:
        return r.status, await r.text()


async def install(fake: FakeSlack, base: str, team_id: str) -> str:
    """The whole "Add to Slack" dance for one team; returns the bot token Slack issued."""
    query, cookie = await _install_page(base)
    code = fake.authorize(team_id, scopes=query["scope"][0])
    status, text = await _redirect(base, code, query["state"][0], cookie)
    assert status == 200, text
    return str(fake.calls_to("oauth.v2.access")[-1].response["access_token"])


async def post_event(fake: FakeSlack, base: str, event: dict[str, Any], team_id: str) -> int:
    raw = json.dumps(fake.event_body(event, team_id=team_id)).encode()
    headers = {**sign(fake.signing_secret, raw), "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(base + "/slack/events", data=raw,
                                                                headers=headers) as r:
        return r.status


async def ask(fake: FakeSlack, base: str, team_id: str, text: str) -> Any:
    """A mention from the team; returns the chat.postMessage call that answered it."""
    event = fake.app_mention_event("U1", "C1", text, team_id=team_id)
    assert await post_event(fake, base, event, team_id) == 200
    answered = await fake.wait_until(lambda: [c for c in fake.calls_to("chat.postMessage") if c.ok
                                              and c.args.get("thread_ts") == event["ts"] and c.args.get("metadata")],
                                     what=f"the answer to {team_id}'s mention")
    return answered[0]


async def test_install_two_teams_answer_each_with_its_own_token(fake: FakeSlack, start: Start, sim: Simulator,
                                                                tmp_path: Path) -> None:
    """Install T2 and T3, each mention answered with that team's token; uninstall T3 (its data gone, T2 keeps
    answering); restart on the same database and answer again; no token in clear in the database file."""
    fake.add_team("T2", name="Second")
    fake.add_team("T3", name="Third")
    bot = await start()
    query, _ = await _install_page(bot.base)
    manifest = parse_manifest((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert query["client_id"] == [fake.client_id]
    assert query["scope"][0].split(",") == manifest["oauth_config"]["scopes"]["bot"]
    tokens = {team: await install(fake, bot.base, team) for team in ("T2", "T3")}
    assert tokens["T2"] != tokens["T3"]

    for team in ("T2", "T3"):
        call = await ask(fake, bot.base, team, f"returns policy for {team}?")
        assert (call.team_id, call.token) == (team, tokens[team])
        assert call.args["channel"] == "C1"
    assert [q["message"] for q in (c.body for c in sim.calls("chat_async"))] == [
        "returns policy for T2?", "returns policy for T3?"]  # the bot's own mention stripped, per team

    await bot.store.set_credentials("slack", "T3", site_id="site-3", sealed_key="sealed", now=time.time())
    await bot.relay.set_setting("slack", "T3", "reply_mode", "all", by="U9")
    assert await post_event(fake, bot.base, fake.uninstall("T3"), "T3") == 200
    assert await bot.store.find_installation(None, "T3") is None
    assert await bot.store.get_credentials("slack", "T3") is None
    assert (await bot.relay.settings("slack", "T3")).reply_mode != "all"
    assert await bot.store.find_installation(None, "T2") is not None
    before = len(sim.calls("chat_async"))
    event = fake.app_mention_event("U1", "C1", "still there?", team_id="T3")
    assert await post_event(fake, bot.base, event, "T3") == 200  # acked, dropped: not installed any more
    call = await ask(fake, bot.base, "T2", "and T2?")
    assert call.token == tokens["T2"]
    assert len(sim.calls("chat_async")) == before + 1  # only T2's question reached Uppzy

    await stop(bot)
    again = await start()
    call = await ask(fake, again.base, "T2", "after a restart?")
    assert (call.team_id, call.token) == ("T2", tokens["T2"])

    raw = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.name.startswith("bot.db"))  # noqa: ASYNC240
    for token in (*tokens.values(), fake.client_secret, KEY):
        assert token.encode() not in raw


@pytest.mark.parametrize("case", ["forged", "expired", "reused"])
async def test_bad_state_is_refused_and_nothing_stored(fake: FakeSlack, start: Start, case: str) -> None:
    """A state we never issued, one past its 10 minutes, or one already used: 4xx, no installation saved."""
    fake.add_team("T2")
    bot = await start()
    query, cookie = await _install_page(bot.base)
    state = query["state"][0]
    if case == "forged":
        state, cookie = "made-up-state", "slack-app-oauth-state=made-up-state"
    elif case == "expired":
        await bot.store._exec("UPDATE oauth_states SET expires_at=?", (time.time() - 1,))
    elif case == "reused":
        assert (await _redirect(bot.base, fake.authorize("T2"), state, cookie))[0] == 200
        await bot.store.delete_installation(None, "T2")
    status, _ = await _redirect(bot.base, fake.authorize("T2"), state, cookie)
    assert 400 <= status < 500
    assert await bot.store.find_installation(None, "T2") is None
    exchanged = [c for c in fake.calls_to("oauth.v2.access")]
    assert len(exchanged) == (1 if case == "reused" else 0)  # the refused redirect never spent its code


async def test_events_of_a_team_without_installation_are_dropped(fake: FakeSlack, start: Start,
                                                                 sim: Simulator, caplog: pytest.LogCaptureFixture
                                                                 ) -> None:
    """A signed mention from a team that never installed the app: acked, one log line, no call anywhere."""
    fake.add_team("T4")
    bot = await start()
    caplog.set_level("INFO", logger="bots.slack.events")
    event = fake.app_mention_event("U1", "C1", "hello?", team_id="T4")
    assert await post_event(fake, bot.base, event, "T4") == 200
    assert any("team=T4 dropped" in r.getMessage() for r in caplog.records)
    await bot.relay.wait_idle(2)
    assert sim.calls("chat_async") == [] and fake.calls_to("chat.postMessage") == []


async def test_tokens_revoked_removes_the_team(fake: FakeSlack, start: Start) -> None:
    """tokens_revoked for the bot: the installation and the workspace's settings go; other teams stay."""
    fake.add_team("T2")
    fake.add_team("T3")
    bot = await start()
    for team in ("T2", "T3"):
        await install(fake, bot.base, team)
    await bot.relay.set_setting("slack", "T2", "reply_mode", "all", by="U9")
    assert await post_event(fake, bot.base, fake.revoke_tokens("T2"), "T2") == 200
    assert await bot.store.find_installation(None, "T2") is None
    assert (await bot.relay.settings("slack", "T2")).reply_mode != "all"
    assert await bot.store.find_installation(None, "T3") is not None
