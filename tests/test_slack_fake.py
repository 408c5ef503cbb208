"""Guards the FakeSlack fixture: the real slack-bolt/slack_sdk stack must run against it unchanged."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_fake import FakeSlack, event_callback_body, sign

_ENV_TO_CLEAR = (
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "SLACK_BOT_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_SIGNING_SECRET",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk routes even loopback calls through a proxy variable, and bolt reads SLACK_* silently."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    """A started fake, stopped after the test."""
    async with FakeSlack() as server:
        yield server


def _client(fake: FakeSlack, *, rate_limit_retries: int = 0) -> AsyncWebClient:
    """A Web API client aimed at the fake, optionally retrying 429s like production would."""
    handlers: list[AsyncRetryHandler] = [AsyncConnectionErrorRetryHandler()]
    if rate_limit_retries:
        handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=rate_limit_retries))
    return AsyncWebClient(base_url=fake.api_url, token=fake.bot_token, retry_handlers=handlers)


def _mention_app(fake: FakeSlack) -> tuple[AsyncApp, AsyncWebClient, list[dict[str, Any]]]:
    """A bolt app that answers mentions in the thread and remembers what it saw."""
    client = _client(fake)
    app = AsyncApp(client=client, signing_secret=fake.signing_secret)
    seen: list[dict[str, Any]] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any, context: Any) -> None:
        seen.append({"event": event, "bot_user_id": context.bot_user_id})
        await say(text="hi", thread_ts=event.get("thread_ts") or event["ts"])

    @app.event("message")
    async def on_message() -> None:
        """Swallow plain messages so bolt does not warn about unhandled requests."""

    return app, client, seen


async def test_socket_mode_mention_is_acked_and_answered_in_thread(fake: FakeSlack) -> None:
    """A mention over Socket Mode is acked and answered with chat.postMessage in the thread."""
    app, client, seen = _mention_app(fake)
    handler = AsyncSocketModeHandler(app, fake.app_token, web_client=client, ping_interval=1)
    try:
        await handler.connect_async()
        await fake.wait_connected()
        event = fake.app_mention_event("U1", "C1", "hello")
        envelope_id = await fake.send_event(event)

        ack = await fake.wait_for_ack(envelope_id)
        assert ack["payload"] is None
        assert ack["at"] >= fake.event_sent_at[envelope_id]
        [call] = await fake.wait_for("chat.postMessage")
        assert call.args["channel"] == "C1"
        assert call.args["text"] == "hi"
        assert call.args["thread_ts"] == event["ts"]
        assert call.token == fake.bot_token
        assert fake.posted_messages("C1")[0]["thread_ts"] == event["ts"]
        assert seen[0]["bot_user_id"] == fake.bot_user_id
        assert fake.calls_to("apps.connections.open")[0].token == fake.app_token

        # The bot's own message comes back as an event: bolt acks it but ignores it (pitfall 6).
        own = fake.message_event(fake.bot_user_id, "C1", "echo", bot_id=fake.bot_id)
        await fake.wait_for_ack(await fake.send_event(own))
        await fake.send_event(fake.app_mention_event("U1", "C1", "again", thread_ts=event["ts"]))
        await fake.wait_for("chat.postMessage", count=2)
        assert len(fake.posted_messages()) == 2
    finally:
        await handler.close_async()


async def test_socket_mode_reconnects_after_disconnect_and_server_close(fake: FakeSlack) -> None:
    """A disconnect message or a server-side close makes the client reconnect and keep receiving events."""
    app, client, _ = _mention_app(fake)
    handler = AsyncSocketModeHandler(app, fake.app_token, web_client=client, ping_interval=1)
    try:
        await handler.connect_async()
        await fake.wait_connected()

        await fake.send_disconnect("refresh_requested")
        await fake.wait_connected(2)
        await fake.wait_for_ack(await fake.send_event(fake.app_mention_event("U1", "C1", "after refresh")))
        await fake.wait_for("chat.postMessage")

        await fake.close_sockets()
        await fake.wait_connected(3)
        await fake.wait_for_ack(await fake.send_event(fake.app_mention_event("U1", "C1", "after close")))
        await fake.wait_for("chat.postMessage", count=2)
        assert len(fake.calls_to("apps.connections.open")) == 3
        assert fake.open_connections == 1
    finally:
        await handler.close_async()


async def test_http_mode_checks_signatures_and_runs_listener(fake: FakeSlack) -> None:
    """Signed HTTP events reach the listener; a bad or stale signature is rejected with 401."""
    app, _, _ = _mention_app(fake)
    runner = web.AppRunner(app.web_app(path="/slack/events"))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        event = fake.app_mention_event("U1", "C1", "over http")
        body = event_callback_body(event, team_id=fake.team_id, event_id="Ev1", api_app_id=fake.app_id)
        raw = json.dumps(body).encode()
        json_type = {"Content-Type": "application/json"}
        async with aiohttp.ClientSession() as session:
            signed = {**sign(fake.signing_secret, raw), **json_type}
            async with session.post(url, data=raw, headers=signed) as r:
                assert r.status == 200
            [call] = await fake.wait_for("chat.postMessage")
            assert call.args["thread_ts"] == event["ts"]

            async with session.post(url, data=raw, headers={**sign("wrong-secret", raw), **json_type}) as r:
                assert r.status == 401
            stale = sign(fake.signing_secret, raw, timestamp=int(time.time()) - 600)
            async with session.post(url, data=raw, headers={**stale, **json_type}) as r:
                assert r.status == 401

            challenge = json.dumps({"type": "url_verification", "challenge": "abc", "token": "t"}).encode()
            signed = {**sign(fake.signing_secret, challenge), **json_type}
            async with session.post(url, data=challenge, headers=signed) as r:
                assert r.status == 200
                assert (await r.json())["challenge"] == "abc"
        assert len(fake.posted_messages()) == 1
    finally:
        await runner.cleanup()


async def test_rate_limited_post_is_retried_once_after_retry_after(fake: FakeSlack) -> None:
    """A scripted 429 with Retry-After is retried by slack_sdk's handler and delivered exactly once."""
    fake.fail_next("chat.postMessage", status=429, retry_after=1)
    client = _client(fake, rate_limit_retries=1)
    started = time.monotonic()
    response = await client.chat_postMessage(channel="C1", text="after the limit")
    assert response["ok"] is True
    assert time.monotonic() - started >= 1.0
    first, second = fake.calls_to("chat.postMessage")
    assert (first.status, first.error, first.scripted) == (429, "ratelimited", True)
    assert second.ok and not second.scripted
    assert [m["text"] for m in fake.posted_messages()] == ["after the limit"]


async def test_slash_command_ack_text_and_respond(fake: FakeSlack) -> None:
    """A slash command envelope is acked with the listener's text, and respond() lands on the fake."""
    client = _client(fake)
    app = AsyncApp(client=client, signing_secret=fake.signing_secret)

    @app.command("/uppzy")
    async def on_command(ack: Any, command: dict[str, Any], respond: Any) -> None:
        await ack(text=f"working on {command['text']}")
        await respond(text="done")

    handler = AsyncSocketModeHandler(app, fake.app_token, web_client=client, ping_interval=1)
    try:
        await handler.connect_async()
        envelope_id = await fake.send_slash_command("/uppzy", "status", user_id="U1", channel_id="C1")
        ack = await fake.wait_for_ack(envelope_id)
        assert ack["payload"] == {"text": "working on status"}
        url = fake.envelopes[envelope_id]["payload"]["response_url"]
        bodies = await fake.wait_until(lambda: fake.response_urls[url], what="respond() body")
        assert bodies[0]["text"] == "done"
    finally:
        await handler.close_async()


async def test_web_api_errors_are_realistic(fake: FakeSlack) -> None:
    """Bad tokens, scripted errors and duplicate reactions fail the way Slack fails them."""
    client = _client(fake)
    with pytest.raises(SlackApiError) as bad_auth:
        await AsyncWebClient(base_url=fake.api_url, token="xoxb-wrong").auth_test()
    assert bad_auth.value.response["error"] == "invalid_auth"

    fake.fail_next("chat.postMessage", error="channel_not_found")
    with pytest.raises(SlackApiError) as missing:
        await client.chat_postMessage(channel="C404", text="x")
    assert missing.value.response.status_code == 200
    assert missing.value.response["error"] == "channel_not_found"

    posted = await client.chat_postMessage(channel="C1", text="answer")
    await client.reactions_add(channel="C1", timestamp=posted["ts"], name="eyes")
    with pytest.raises(SlackApiError) as twice:
        await client.reactions_add(channel="C1", timestamp=posted["ts"], name="eyes")
    assert twice.value.response["error"] == "already_reacted"
    await client.reactions_remove(channel="C1", timestamp=posted["ts"], name="eyes")
    with pytest.raises(SlackApiError) as gone:
        await client.reactions_remove(channel="C1", timestamp=posted["ts"], name="eyes")
    assert gone.value.response["error"] == "no_reaction"

    fake.add_user("U1", name="ada", email="ada@example.com", is_admin=True)
    user = await client.users_info(user="U1")
    assert user["user"]["profile"]["email"] == "ada@example.com"
    with pytest.raises(SlackApiError) as unknown:
        await client.users_info(user="U404")
    assert unknown.value.response["error"] == "user_not_found"
    im = await client.conversations_info(channel="D123")
    assert im["channel"]["is_im"] is True

    updated = await client.chat_update(channel="C1", ts=posted["ts"], text="edited")
    assert updated["message"]["text"] == "edited"
    assert posted["ts"] < fake.next_ts()


async def test_interactive_payloads_and_event_retries_reach_bolt(fake: FakeSlack) -> None:
    """Button clicks, view submissions and retried events are dispatched like Slack's own envelopes."""
    client = _client(fake)
    app = AsyncApp(client=client, signing_secret=fake.signing_secret)
    retries: list[Any] = []

    @app.action("vote")
    async def on_vote(ack: Any, respond: Any) -> None:
        await ack()
        await respond(text="thanks")

    @app.view("ask")
    async def on_submit(ack: Any) -> None:
        await ack(response_action="errors", errors={"q": "too short"})

    @app.event("app_mention")
    async def on_mention(request: Any) -> None:
        retries.append(request.headers.get("x-slack-retry-num"))

    handler = AsyncSocketModeHandler(app, fake.app_token, web_client=client, ping_interval=1)
    try:
        await handler.connect_async()
        click = await fake.send_interactive(
            {
                "type": "block_actions",
                "user": {"id": "U1"},
                "channel": {"id": "C1"},
                "container": {"type": "message", "channel_id": "C1", "message_ts": fake.next_ts()},
                "actions": [{"action_id": "vote", "block_id": "b", "type": "button", "value": "up"}],
            }
        )
        await fake.wait_for_ack(click)
        url = fake.envelopes[click]["payload"]["response_url"]
        assert (await fake.wait_until(lambda: fake.response_urls[url]))[0]["text"] == "thanks"

        submit = await fake.send_interactive(
            {"type": "view_submission", "user": {"id": "U1"}, "view": {"callback_id": "ask"}}
        )
        ack = await fake.wait_for_ack(submit)
        assert ack["payload"] == {"response_action": "errors", "errors": {"q": "too short"}}

        mention = fake.app_mention_event("U1", "C1", "hi")
        await fake.send_event(mention, event_id="Ev9")
        await fake.send_event(mention, event_id="Ev9", retry_attempt=1, retry_reason="timeout")
        # Pitfall 3: the first Socket Mode delivery already carries retry number "0".
        assert sorted(await fake.wait_until(lambda: retries if len(retries) == 2 else None)) == [["0"], ["1"]]
    finally:
        await handler.close_async()


# ---- several Socket Mode connections (replicas) ----------------------------------------------------------------


async def _raw_socket(fake: FakeSlack, session: aiohttp.ClientSession) -> tuple[aiohttp.ClientWebSocketResponse, Any]:
    """A bare Socket Mode client that acks nothing: a replica that hangs, or one that dies before acking."""
    async with session.post(f"{fake.api_url}apps.connections.open",
                            headers={"Authorization": f"Bearer {fake.app_token}"}) as r:
        url = (await r.json())["url"]
    ws = await session.ws_connect(url, autoping=True)
    return ws, await ws.receive_json(timeout=2)


async def _bolt_replica(fake: FakeSlack) -> tuple[AsyncSocketModeHandler, list[dict[str, Any]]]:
    """One replica: a bolt app with its own Socket Mode connection, started after the ones before it."""
    app, client, seen = _mention_app(fake)
    handler = AsyncSocketModeHandler(app, fake.app_token, web_client=client, ping_interval=1)
    opened = fake.connection_count
    await handler.connect_async()
    await fake.wait_connected(opened + 1, at_once=True)
    return handler, seen


async def test_random_distribution_gives_each_event_to_one_of_three_bolt_connections() -> None:
    """Three replicas each hold a socket; every event goes to exactly one of them, and all three get some."""
    async with FakeSlack(distribution="random", seed=11) as fake:
        replicas = [await _bolt_replica(fake) for _ in range(3)]
        try:
            assert fake.open_socket_ids == [1, 2, 3]
            events = [fake.app_mention_event("U1", "C1", f"q{i}") for i in range(30)]
            for i, event in enumerate(events):
                await fake.send_event(event, event_id=f"Ev{i}")
            await fake.wait_for("chat.postMessage", count=30)

            per_socket = fake.deliveries_per_socket()
            assert sorted(per_socket) == [1, 2, 3] and all(per_socket.values()), per_socket
            assert sum(per_socket.values()) == 30
            # Replica k opened connection k, and it saw exactly what the fake sent on that socket.
            assert [len(seen) for _, seen in replicas] == [per_socket[k] for k in (1, 2, 3)]
            assert sorted(m["thread_ts"] for m in fake.posted_messages()) == sorted(e["ts"] for e in events)
            assert all(d.attempt == 0 and fake.acks[d.envelope_id]["socket"] == d.socket for d in fake.deliveries)
        finally:
            for handler, _ in replicas:
                await handler.close_async()


async def test_event_not_acked_in_time_is_redelivered_to_another_socket() -> None:
    """A replica that never acks: Slack sends the event again, new envelope, same event_id, to the other socket."""
    async with FakeSlack(redeliver_after=0.2) as fake, aiohttp.ClientSession() as session:
        hung, hello = await _raw_socket(fake, session)
        assert hello["type"] == "hello"
        handler, seen = await _bolt_replica(fake)
        try:
            event = fake.app_mention_event("U1", "C1", "anyone there?")
            first = await fake.send_event(event, event_id="EvLOST", socket=1)
            assert (await hung.receive_json(timeout=2))["envelope_id"] == first
            [call] = await fake.wait_for("chat.postMessage")
            assert call.args["thread_ts"] == event["ts"]

            lost, again = fake.deliveries_of("EvLOST")
            assert (lost.socket, lost.attempt, lost.reason) == (1, 0, "")
            assert (again.socket, again.attempt, again.reason) == (2, 1, "timeout")
            assert again.envelope_id != first and first not in fake.acks
            assert fake.envelopes[again.envelope_id]["retry_attempt"] == 1
            assert fake.acks[again.envelope_id]["socket"] == 2
            assert 0.2 <= again.at - lost.at < 1.0
            assert [s["event"]["ts"] for s in seen] == [event["ts"]]
        finally:
            await handler.close_async()
            await hung.close()


@pytest.mark.parametrize("how", ["client_closes", "server_cuts_tcp"])
async def test_unacked_events_of_a_closed_socket_go_to_another_at_once(how: str) -> None:
    """A replica dies holding two unacked events: both are redelivered to the survivor without waiting."""
    async with FakeSlack(redeliver_after=30) as fake, aiohttp.ClientSession() as session:
        dying, _ = await _raw_socket(fake, session)
        handler, seen = await _bolt_replica(fake)
        try:
            events = [fake.app_mention_event("U1", "C1", f"q{i}") for i in range(2)]
            for i, event in enumerate(events):
                await fake.send_event(event, event_id=f"EvDIE{i}", socket=1)
                await dying.receive_json(timeout=2)
            if how == "client_closes":
                await dying.close()
            else:
                await fake.close_socket(1, abort=True)
            await fake.wait_for("chat.postMessage", count=2, timeout=3)  # far sooner than the 30 s ack deadline

            for i in range(2):
                lost, again = fake.deliveries_of(f"EvDIE{i}")
                assert (lost.socket, again.socket, again.attempt, again.reason) == (1, 2, 1, "connection_closed")
            assert fake.open_socket_ids == [2] and len(seen) == 2
        finally:
            await handler.close_async()
            await dying.close()


async def test_retries_stop_after_three_and_fall_back_to_the_only_socket() -> None:
    """With one socket that never acks, the event is sent 4 times in all (3 retries) on that socket, then dropped."""
    async with FakeSlack(redeliver_after=0.05) as fake, aiohttp.ClientSession() as session:
        hung, _ = await _raw_socket(fake, session)
        try:
            await fake.send_event(fake.app_mention_event("U1", "C1", "hello?"), event_id="EvGONE")
            await fake.wait_until(lambda: fake.sockets.given_up, what="Slack giving up")
            tries = fake.deliveries_of("EvGONE")
            assert [(d.socket, d.attempt, d.reason) for d in tries] == [
                (1, 0, ""), (1, 1, "timeout"), (1, 2, "timeout"), (1, 3, "timeout")]
            received = [await hung.receive_json(timeout=2) for _ in range(4)]
            assert [r["envelope_id"] for r in received] == [d.envelope_id for d in tries]
            assert {r["payload"]["event_id"] for r in received} == {"EvGONE"}
        finally:
            await hung.close()


async def test_an_eleventh_concurrent_socket_is_turned_away_like_slack_does() -> None:
    """Slack allows 10 sockets per app; the 11th gets disconnect/too_many_websockets and is closed."""
    async with FakeSlack() as fake, aiohttp.ClientSession() as session:
        sockets = [await _raw_socket(fake, session) for _ in range(10)]
        assert [hello["num_connections"] for _, hello in sockets] == list(range(1, 11))
        extra, refusal = await _raw_socket(fake, session)
        assert (refusal["type"], refusal["reason"]) == ("disconnect", "too_many_websockets")
        closing = await extra.receive(timeout=2)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert fake.refused_connections == 1 and fake.open_connections == 10

        await fake.close_socket(3)
        await fake.wait_until(lambda: fake.open_connections == 9, what="socket 3 closed")
        late, hello = await _raw_socket(fake, session)
        assert hello["type"] == "hello" and fake.open_socket_ids == [1, 2, 4, 5, 6, 7, 8, 9, 10, 11]
        for ws, _ in [*sockets, (late, None), (extra, None)]:
            await ws.close()
