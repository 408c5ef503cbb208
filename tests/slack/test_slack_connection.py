"""Connecting to Slack: signed HTTP mode, Socket Mode reconnects, and one clear line for bad credentials."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import pytest

from bots.slack.app import SlackBot, SlackUnavailable
from core.config import ConfigError, Secret
from tests.fakes.slack_fake import FakeSlack, slash_command_form

if TYPE_CHECKING:
    from tests.slack_support import RigFactory



async def test_http_mode_answers_signed_events_once_and_rejects_bad_signatures(make_rig: RigFactory) -> None:
    """Signed events are acked and answered once (retries included); a bad or stale signature gets 401."""
    rig = await make_rig(http=True)
    event = rig.fake.app_mention_event("U1", "C1", "over http")
    body = rig.event_body(event, event_id="EvHTTP")
    assert await rig.post_http(body) == (200, "")
    assert (await rig.post_http(body, headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}))[0] \
        == 200
    assert (await rig.post_http(body, secret="not-the-secret"))[0] == 401
    assert (await rig.post_http(body, timestamp=int(time.time()) - 600))[0] == 401
    status, challenge = await rig.post_http({"type": "url_verification", "challenge": "c-123", "token": "t"})
    assert status == 200 and "c-123" in challenge
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    assert len(rig.answers(event["ts"])) == 1 and len(rig.questions()) == 1


async def test_http_mode_slash_command_is_acked_and_answered(make_rig: RigFactory) -> None:
    """A form-encoded, signed /uppzy request is acked at once and answered on its response_url."""
    rig = await make_rig(http=True)
    url = rig.fake.new_response_url()
    form = slash_command_form("/uppzy", "help", user_id="U1", channel_id="C1", response_url=url)
    status, _ = await rig.post_http(urlencode(form), form=True)
    assert status == 200
    [reply] = await rig.fake.wait_until(lambda: rig.fake.response_urls[url], what="respond()")
    assert reply["response_type"] == "ephemeral" and "/uppzy status" in reply["text"]
    assert (await rig.post_http(urlencode(form), form=True, secret="wrong"))[0] == 401


async def test_socket_mode_reconnects_after_disconnect(make_rig: RigFactory) -> None:
    """A 'disconnect' from Slack opens a fresh socket via apps.connections.open, and events keep flowing."""
    rig = await make_rig()
    assert rig.bot.connected
    await rig.fake.send_disconnect("refresh_requested")
    await rig.fake.wait_connected(2)
    event = await rig.mention("still there?")
    await rig.wait_answer(event["ts"])
    assert len(rig.fake.calls_to("apps.connections.open")) == 2 and rig.fake.open_connections == 1
    await rig.bot.stop()
    assert not rig.bot.connected


async def test_every_envelope_is_acked_before_the_answer(make_rig: RigFactory) -> None:
    """Socket Mode acks an event immediately, long before Uppzy's answer is posted."""
    rig = await make_rig()
    rig.sim.script("slow", latency=0.5)
    event = rig.fake.app_mention_event("U1", "C1", "slow question")
    envelope = await rig.fake.send_event(event)
    ack = await rig.fake.wait_for_ack(envelope)
    assert ack["at"] - rig.fake.event_sent_at[envelope] < 0.1
    assert not rig.answers(event["ts"])
    await rig.wait_answer(event["ts"])


@pytest.mark.parametrize(
    ("overrides", "variable", "words"),
    [
        ({"slack_bot_token": Secret("xoxb-wrong")}, "SLACK_BOT_TOKEN", "invalid_auth"),
        ({"slack_app_token": Secret("xapp-wrong")}, "SLACK_APP_TOKEN", "invalid_auth"),
        ({"slack_app_token": None, "slack_signing_secret": None}, "SLACK_SIGNING_SECRET", "HTTP mode"),
    ],
)
async def test_refused_credentials_stop_start_up_with_one_clear_line(
    make_rig: RigFactory, overrides: dict, variable: str, words: str
) -> None:
    """A token Slack refuses, or HTTP mode without a signing secret, raises ConfigError naming the variable."""
    with pytest.raises(ConfigError) as refused:
        await make_rig(**overrides)
    assert refused.value.variable == variable
    assert words in str(refused.value) and "\n" not in str(refused.value)
    assert "xoxb-wrong" not in str(refused.value) and "xapp-wrong" not in str(refused.value)


async def test_unreachable_slack_is_an_outage_to_retry_not_a_config_error(make_rig: RigFactory) -> None:
    """A SLACK_API_BASE_URL nobody answers on is SlackUnavailable (the runner retries it): one line naming the
    setting and the URL, never blaming the token."""
    with pytest.raises(SlackUnavailable) as failed:
        await make_rig(slack_api_base_url="http://127.0.0.1:9/api/")
    text = str(failed.value)
    assert "SLACK_API_BASE_URL" in text and "http://127.0.0.1:9/api/" in text
    assert "token" not in text and "\n" not in text


@pytest.mark.parametrize(("status", "error"), [(503, "service_unavailable"), (500, "internal_error")])
async def test_slack_5xx_at_start_is_an_outage_that_does_not_blame_the_token(make_rig: RigFactory, fake: FakeSlack,
                                                                              status: int, error: str) -> None:
    """auth.test answering 5xx is SlackUnavailable naming the HTTP status, not 'auth.test failed (None)' against
    SLACK_BOT_TOKEN; a missing scope is a ConfigError naming the scope."""
    fake.fail_next("auth.test", error=error, status=status)
    with pytest.raises(SlackUnavailable) as failed:
        await make_rig()
    assert f"HTTP {status}" in str(failed.value) and "SLACK_BOT_TOKEN" not in str(failed.value)
    fake.fail_next("auth.test", error="missing_scope")
    with pytest.raises(ConfigError) as refused:
        await make_rig()
    assert refused.value.variable == "SLACK_BOT_TOKEN" and "lacks the scope" in str(refused.value)


async def test_http_events_before_start_get_503_so_slack_retries(make_rig: RigFactory) -> None:
    """Before start() (the runner's web server is up first) /slack/events answers 503, so Slack redelivers."""
    rig = await make_rig(http=True)
    early = SlackBot(rig.bot.settings, rig.relay)  # constructed, routes served, never started
    try:
        rig.http_url = f"http://127.0.0.1:{await early.serve_http('127.0.0.1', 0)}/slack/events"
        assert (await rig.post_http(rig.event_body(rig.fake.app_mention_event("U1", "C1", "too early"))))[0] == 503
    finally:
        await early.stop()
