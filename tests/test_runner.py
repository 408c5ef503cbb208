"""`uppzy-bot run` as a whole: Slack and Discord in one process, health/readiness/metrics on PORT, clean stop."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time

import aiohttp

from bots.runner import GC_YOUNG, run_bot
from core.config import Secret, Settings
from simulator import Simulator
from tests.discord_support import GUILD_ID, TEXT_ID, USER_ID, build_world
from tests.fakes.discord_fake import FakeDiscord
from tests.fakes.slack_fake import FakeSlack, event_callback_body, sign
from tests.fault_support import wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}{path}") as res:
        return res.status, await res.text()


async def test_both_platforms_in_one_process_with_health_and_metrics(tmp_path, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    """One process answers Slack and Discord, reports ready, exports metrics, and stops within seconds."""
    port = _free_port()
    async with FakeSlack() as slack, FakeDiscord() as discord_fake:
        build_world(discord_fake)
        settings = Settings(
            uppzy_api_key=Secret("sim-key"), uppzy_site_id="demo-site", uppzy_base_url=sim.base_url,
            slack_bot_token=Secret(slack.bot_token), slack_app_token=Secret(slack.app_token),
            slack_api_base_url=slack.api_url, discord_bot_token=Secret(discord_fake.token),
            discord_api_base_url=discord_fake.api_base, discord_gateway_url=discord_fake.gateway_url,
            database_url=f"sqlite:///{tmp_path / 'bot.db'}", port=port,
        )
        stop, started = asyncio.Event(), asyncio.Event()
        before = gc.get_threshold()
        runner = asyncio.create_task(run_bot(settings, stop=stop, started=started, host="127.0.0.1"))
        try:
            await _exercise(port, slack, discord_fake, started)
            # While running: start-up's objects are out of the collector's view, young collections are rarer.
            assert gc.get_freeze_count() > 0 and gc.get_threshold()[0] == GC_YOUNG > before[0]
        finally:
            stopping = time.monotonic()
            stop.set()
            assert await asyncio.wait_for(runner, 10) == 0
            assert time.monotonic() - stopping < 10
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0  # as found (tests share the process)


async def _exercise(port: int, slack: FakeSlack, discord_fake: FakeDiscord, started: asyncio.Event) -> None:
    """Readiness, one answer per platform, and the metrics that show it."""
    await asyncio.wait_for(started.wait(), 15)
    assert await _get(port, "/healthz") == (200, '{"status": "ok"}')
    status, body = await _get(port, "/readyz")
    assert status == 200 and json.loads(body)["checks"] == {"store": True, "slack": True, "discord": True}

    await slack.send_event(slack.app_mention_event("U1", "C1", "how do returns work?"))
    question = await discord_fake.user_message(channel_id=TEXT_ID, author_id=USER_ID, guild_id=GUILD_ID,
                                               content="how do returns work?", mentions_bot=True)
    await slack.wait_for("chat.postMessage", timeout=10)
    thread = int(question["id"])  # Discord: the answer's thread id is the question's message id
    await discord_fake.wait_for(lambda: any("30 days" in (m.get("content") or "")
                                            for m in discord_fake.messages_in(thread)), timeout=10)
    _, metrics = await _get(port, "/metrics")
    assert 'uppzy_bot_platform_connected{platform="slack"} 1.0' in metrics
    assert 'uppzy_bot_platform_connected{platform="discord"} 1.0' in metrics
    delivered = 'uppzy_bot_answers_delivered_total{platform="slack",workspace="T1"} 1.0'
    latest = {"metrics": metrics}

    async def counted() -> bool:  # counted once the post returned, so it may trail the answer
        latest["metrics"] = (await _get(port, "/metrics"))[1]
        return delivered in latest["metrics"]

    await wait_until(counted, interval=0.05, what=lambda: "the delivery counted; metrics say "
                     f"{[line for line in latest['metrics'].splitlines() if 'delivered' in line]}")
    assert "uppzy_bot_uppzy_request_seconds_bucket" in latest["metrics"]


async def test_slack_http_mode_shares_the_port_with_health(tmp_path, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    """Without an app token Slack runs in HTTP mode on PORT: signed events answered, bad signatures refused."""
    port = _free_port()
    async with FakeSlack() as slack:
        settings = Settings(
            uppzy_api_key=Secret("sim-key"), uppzy_site_id="demo-site", uppzy_base_url=sim.base_url,
            slack_bot_token=Secret(slack.bot_token), slack_signing_secret=Secret(slack.signing_secret),
            slack_api_base_url=slack.api_url, database_url=f"sqlite:///{tmp_path / 'bot.db'}", port=port,
        )
        stop, started = asyncio.Event(), asyncio.Event()
        runner = asyncio.create_task(run_bot(settings, stop=stop, started=started, host="127.0.0.1"))
        await asyncio.wait_for(started.wait(), 15)
        event = slack.app_mention_event("U1", "C1", "how do returns work?")
        slack.remember_message(event)
        body = json.dumps(event_callback_body(event, team_id=slack.team_id)).encode()
        url = f"http://127.0.0.1:{port}/slack/events"
        async with aiohttp.ClientSession() as http:
            headers = {"Content-Type": "application/json", **sign(slack.signing_secret, body)}
            async with http.post(url, data=body, headers=headers) as res:
                assert res.status == 200
            bad = {"Content-Type": "application/json", **sign("not-the-secret", body)}
            async with http.post(url, data=body, headers=bad) as res:
                assert res.status == 401
        await slack.wait_for("chat.postMessage", timeout=10)
        assert (await _get(port, "/healthz"))[0] == 200
        stop.set()
        assert await asyncio.wait_for(runner, 10) == 0


async def test_a_refusal_found_while_retrying_ends_run_with_a_config_error(tmp_path, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    """Slack answers 503 at start (retried, /readyz 503), then invalid_auth: run_bot stops and raises the
    ConfigError naming SLACK_BOT_TOKEN (exit 2), instead of retrying a refused token forever."""
    from core.backoff import Backoff
    from core.config import ConfigError

    port = _free_port()
    async with FakeSlack() as slack:
        slack.fail_next("auth.test", error="service_unavailable", status=503)
        slack.fail_next("auth.test", error="invalid_auth")
        settings = Settings(
            uppzy_api_key=Secret("sim-key"), uppzy_site_id="demo-site", uppzy_base_url=sim.base_url,
            slack_bot_token=Secret(slack.bot_token), slack_app_token=Secret(slack.app_token),
            slack_api_base_url=slack.api_url, database_url=f"sqlite:///{tmp_path / 'bot.db'}", port=port,
        )
        started = asyncio.Event()
        runner = asyncio.create_task(run_bot(settings, started=started, host="127.0.0.1",
                                             connect_backoff=Backoff(initial=0.3, maximum=0.3)))
        await asyncio.wait_for(started.wait(), 15)
        status, body = await _get(port, "/readyz")
        assert status == 503 and json.loads(body)["checks"]["slack"] is False
        try:
            await asyncio.wait_for(runner, 10)
        except ConfigError as exc:
            assert exc.variable == "SLACK_BOT_TOKEN" and "invalid_auth" in str(exc)
        else:
            raise AssertionError("run_bot returned instead of raising the refusal")
        assert len(slack.calls_to("auth.test")) == 2


async def test_a_stop_during_the_first_connection_attempt_is_prompt(tmp_path, sim: Simulator) -> None:  # type: ignore[no-untyped-def]
    """Slack's Socket Mode URL never answers, so the first connection attempt would wait its 30 s: SIGTERM (stop)
    meanwhile ends the run within a few seconds, as systemd and Docker expect, not after the attempt."""
    port = _free_port()
    dead = _free_port()  # nothing listens there
    async with FakeSlack() as slack:
        slack.set_response("apps.connections.open", {"ok": True, "url": f"ws://127.0.0.1:{dead}/socket"})
        settings = Settings(
            uppzy_api_key=Secret("sim-key"), uppzy_site_id="demo-site", uppzy_base_url=sim.base_url,
            slack_bot_token=Secret(slack.bot_token), slack_app_token=Secret(slack.app_token),
            slack_api_base_url=slack.api_url, database_url=f"sqlite:///{tmp_path / 'bot.db'}", port=port,
        )
        stop, started = asyncio.Event(), asyncio.Event()
        runner = asyncio.create_task(run_bot(settings, stop=stop, started=started, host="127.0.0.1"))
        await wait_until(lambda: slack.calls_to("apps.connections.open"), what="the Socket Mode connection attempt")
        status, _ = await _get(port, "/healthz")
        assert status == 200 and not started.is_set()
        stop.set()
        assert await asyncio.wait_for(runner, 8) == 0
