"""POST /slack/events on the runner's web server against malformed, unsigned requests: 400/401, never 500,
and at most one short log line per bad request."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

import aiohttp
import pytest

from bots.slack.app import EVENTS_PATH
from bots.web import WebServer
from core.metrics import Metrics
from tests.fakes.slack_fake import sign

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig


async def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as res:
        await res.read()
        return res.status


async def _served(rig: SlackRig) -> tuple[WebServer, str]:
    web = WebServer(metrics=Metrics(), routes=rig.bot.http_routes())
    port = await web.start("127.0.0.1", 0)
    return web, f"http://127.0.0.1:{port}{EVENTS_PATH}"


GARBAGE = b"\x00\xff\xfegarb"
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("name", "body", "headers", "expected"),
    [
        ("six bytes of garbage, unsigned", GARBAGE, JSON, 401),
        ("timestamp abc", GARBAGE, {**JSON, "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, 401),
        ("huge timestamp", b"{}", {**JSON, "X-Slack-Request-Timestamp": "9" * 400, "X-Slack-Signature": "v0=0"}, 401),
        ("non-ASCII signature", b"{}", {**JSON, "X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=é"}, 401),
        ("unsigned, charset=foo", b'{"type":"event_callback"}', {"Content-Type": "application/json; charset=foo"},
         401),
        ("form body, unsigned", b"payload=%7Bnot-json", {"Content-Type": "application/x-www-form-urlencoded"}, 401),
    ],
)
async def test_unsigned_malformed_requests_are_refused_without_a_500(
        make_rig: RigFactory, caplog: pytest.LogCaptureFixture, name: str, body: bytes, headers: dict[str, str],
        expected: int) -> None:
    """Each malformed unsigned request gets 401 (not 500), and logs at most one line without a traceback."""
    rig = await make_rig(http=True)
    web, url = await _served(rig)
    try:
        caplog.set_level(logging.DEBUG, logger="aiohttp")
        caplog.set_level(logging.INFO)
        caplog.clear()
        assert await _post(url, body, headers) == expected, name
        mine = [r for r in caplog.records if r.name.startswith(("aiohttp", "bots.web", "bots.slack"))]
        assert len(mine) <= 1 and all(not r.exc_info and "\n" not in r.getMessage() for r in mine), mine
    finally:
        await web.stop()


async def test_signed_requests_with_odd_bodies_get_400_or_are_answered(make_rig: RigFactory) -> None:
    """A signed event with charset=foo is answered (Slack sends UTF-8 whatever the header says); a signed body that
    is not UTF-8 or not JSON gets 400."""
    rig = await make_rig(http=True)
    web, url = await _served(rig)
    try:
        event = rig.fake.app_mention_event("U1", "C1", "charset test")
        raw = json.dumps(rig.event_body(event)).encode()
        odd = {"Content-Type": "application/json; charset=foo", **sign(rig.fake.signing_secret, raw)}
        assert await _post(url, raw, odd) == 200
        assert await _post(url, GARBAGE, {**JSON, **sign(rig.fake.signing_secret, GARBAGE)}) == 400
        assert await _post(url, b"{not json", {**JSON, **sign(rig.fake.signing_secret, b"{not json")}) == 400
        await rig.wait_answer(event["ts"])
    finally:
        await web.stop()


async def test_a_flood_of_bad_requests_logs_a_bounded_number_of_lines(make_rig: RigFactory,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """150 garbage requests with timestamp 'abc' produce at most ~20 short log lines in all."""
    rig = await make_rig(http=True)
    web, url = await _served(rig)
    try:
        caplog.set_level(logging.INFO)
        caplog.clear()
        headers = {**JSON, "X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}
        async with aiohttp.ClientSession() as http:
            for _ in range(150):
                async with http.post(url, data=GARBAGE, headers=headers) as res:
                    assert res.status == 401
        mine = [r for r in caplog.records if r.name.startswith(("aiohttp", "bots.web", "bots.slack"))]
        assert len(mine) <= 21 and sum(len(r.getMessage()) for r in mine) < 4096
    finally:
        await web.stop()
