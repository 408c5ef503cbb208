"""Bad input through the real adapters: empty, blank, oversized and broken-Unicode messages, odd slash-command
arguments, unknown settings keys and malformed events. Each gets one clear reply or a logged drop, and the bot
keeps answering the next normal question.
"""

# The Slack fixtures are imported, not loaded with pytest_plugins: registering that plugin from here would
# change which global `fake` (Slack's or Discord's) later modules see. Test parameters shadow the imports.
# ruff: noqa: F811

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
import pytest

from bots.discord import strings as dmsgs
from bots.slack.format import to_mrkdwn
from core import messages
from core.uppzy import UppzyClient
from core.workspace import SETTING_KEYS
from simulator import Simulator
from tests.discord_support import ADMIN_ID, GUILD_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.slack_fake import sign, slash_command_form
from tests.fault_support import check_texts, discord_harness
from tests.slack_support import fake, make_rig, rig  # noqa: F401

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig

HUGE = "Why? " * 8000  # 40,000 characters, Slack's own ceiling for a message
BLANK = "  \t\n\u3000\u00a0 \n"
CONTROL_ONLY = "\x00\x07\x1b"
BROKEN = "is \ud83d half an emoji \x00 and a bell \x07 ok for returns?"  # a lone surrogate, NUL and BEL
EMPTY = to_mrkdwn(messages.EMPTY_MESSAGE)
TOO_LONG = to_mrkdwn(messages.too_long(4000))


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    """ERROR (and worse) lines, i.e. anything that was not a deliberate, logged drop."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


# ---- Slack: messages -------------------------------------------------------------------------------------------


async def test_slack_empty_blank_and_oversized_questions_get_one_clear_reply_each(rig: SlackRig) -> None:
    """Sent: a bare mention, blank and control-character-only mentions, a 40,000-character mention, and blank and
    oversized DMs (the bare mention twice); asserted: one clear reply each in its thread, Uppzy never asked."""
    cases = [
        (await rig.mention(""), EMPTY),
        (await rig.mention(BLANK), EMPTY),
        (await rig.mention(CONTROL_ONLY), EMPTY),
        (await rig.mention(HUGE), TOO_LONG),
        (await rig.message(BLANK, channel="D1"), EMPTY),
        (await rig.message(HUGE, channel="D1"), TOO_LONG),
    ]
    await rig.fake.send_event(cases[0][0], event_id="EvAgain", retry_attempt=1, retry_reason="timeout")
    await rig.fake.wait_until(lambda: all(rig.posts_in(e["ts"]) for e, _ in cases), what="a reply per message")
    await rig.drain()  # a second reply (to the redelivery, say) would be posted by now
    for event, reply in cases:
        assert [m["text"] for m in rig.posts_in(event["ts"])] == [reply]
    assert rig.sim.calls("chat_async") == []


async def test_slack_question_with_broken_unicode_is_answered_once(rig: SlackRig, caplog: pytest.LogCaptureFixture
                                                                  ) -> None:
    """Sent: a mention holding a lone surrogate, NUL and BEL; asserted: it is answered once, Uppzy gets the text
    with U+FFFD for the broken character and no control characters, and nothing is logged as an error."""
    event = await rig.mention(BROKEN)
    [answer] = await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    [question] = rig.questions()
    assert question["message"] == "is \ufffd half an emoji  and a bell  ok for returns?"
    assert len(rig.posts_in(event["ts"])) == 1 and "30 days" in answer["text"]
    assert errors(caplog) == []


# ---- Slack: /uppzy arguments -----------------------------------------------------------------------------------


async def test_slack_slash_command_with_odd_unicode_and_unknown_keys_gets_clear_replies(
    rig: SlackRig, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent over Socket Mode: /uppzy set with a lone surrogate, NUL and BEL in the value and in the key, unknown and
    missing keys, a bad duration, and control characters as the command; asserted: each gets one clear ephemeral
    reply (saved with U+FFFD, or what is accepted), never 'something went wrong', and no error is logged."""
    keys = ", ".join(SETTING_KEYS)
    saved = await rig.command("set fallback_text Sorry \ud83d\x00\x07, try later", user="U9")
    assert saved == "Saved: `fallback_text` is now `Sorry \ufffd, try later`."
    assert "settable keys: " + keys in await rig.command("set c\ud800lour blue", user="U9")
    assert await rig.command("set colour blue", user="U9") == f"unknown setting 'colour'; settable keys: {keys}"
    assert "Settable keys: `site_id`" in await rig.command("set", user="U9")
    refused = await rig.command("set idle_timeout \ud83d\x07", user="U9")
    assert refused.startswith("idle_timeout must be a duration") and "\ufffd" in refused
    assert (await rig.command("\x00\x07 \ud800", user="U9")).startswith("I don't know")
    assert "channel mode must be one of: mention, all, off" in await rig.command("channel \ud83d", user="U9")
    for url, bodies in rig.fake.response_urls.items():
        assert len(bodies) == 1, url
        assert "something went wrong" not in bodies[0]["text"]
    assert errors(caplog) == []
    assert (await rig.relay.workspaces.get("slack", "T1")).fallback_text == "Sorry \ufffd, try later"


async def test_slack_http_slash_command_with_invalid_utf8(make_rig: RigFactory, caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    """Sent in HTTP mode (signed, form-encoded): invalid UTF-8 percent-encoded in /uppzy's text, then as raw bytes in
    the body; asserted: the first is saved with U+FFFD and confirmed privately, the second is refused with a 400 and
    a logged warning (Slack only sends UTF-8), and the next command is still answered."""
    rig = await make_rig(http=True, admins=("U9",))
    url = rig.fake.new_response_url()
    form = urlencode(slash_command_form("/uppzy", "set fallback_text HERE", user_id="U9", channel_id="C1",
                                        response_url=url)).encode()

    async def post(body: bytes) -> tuple[int, str]:
        headers = {**sign(rig.fake.signing_secret, body), "Content-Type": "application/x-www-form-urlencoded"}
        async with aiohttp.ClientSession() as http, http.post(rig.http_url or "", data=body, headers=headers) as res:
            return res.status, await res.text()

    assert (await post(form.replace(b"HERE", b"Oops+%FF%FE%ED%A0%80+again")))[0] == 200
    [reply] = await rig.fake.wait_until(lambda: rig.fake.response_urls[url], what="the /uppzy reply")
    assert reply == {"text": "Saved: `fallback_text` is now `Oops \ufffd\ufffd\ufffd\ufffd\ufffd again`.",
                     "response_type": "ephemeral"}
    assert await post(form.replace(b"HERE", b"raw \xff\xfe\xed\xa0\x80 bytes")) == (400, "request body is not "
                                                                                      "valid UTF-8")
    assert any("not valid UTF-8" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert (await post(form.replace(b"HERE", b"All+good")))[0] == 200
    await rig.fake.wait_until(lambda: len(rig.fake.response_urls[url]) == 2, what="the next reply")
    assert errors(caplog) == []


# ---- Slack: malformed events -----------------------------------------------------------------------------------


async def test_slack_malformed_events_are_dropped_and_the_bot_keeps_answering(
    rig: SlackRig, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent: app_mentions without user, channel or ts, with numbers/objects where strings belong, an unknown event
    type, reactions on a file and without an item, an edit without fields, a button with an unknown action_id;
    asserted: each is a logged drop (a null text is an empty question and gets that reply), none reaches Uppzy,
    and a normal question afterwards is answered once."""
    base = rig.fake.app_mention_event("U1", "C1", "how do returns work?")
    broken: list[dict[str, Any]] = []
    for change in ({"user": None}, {"channel": None}, {"ts": None}, {"user": {"id": "U1"}}, {"user": 42},
                   {"ts": 1700000000.5}, {"channel": 42}, {"text": None}, {"text": 12345}):
        event = {**copy.deepcopy(base), "ts": rig.fake.next_ts(), **change}
        broken.append({k: v for k, v in event.items() if v is not None or k == "text"})
    broken += [
        {"type": "pin_added", "user": "U1", "channel_id": "C1", "item": {"type": "message"}},
        {"type": "reaction_added", "user": "U1", "reaction": "+1", "item": {"type": "file", "file": "F1"},
         "event_ts": rig.fake.next_ts()},
        {"type": "reaction_added", "user": "U1", "reaction": "+1", "event_ts": rig.fake.next_ts()},
        {"type": "message", "subtype": "message_changed", "channel": "C1", "hidden": True},
    ]
    for event in broken:
        await rig.fake.send_event(event)
    await rig.fake.send_interactive({"type": "block_actions", "user": {"id": "U1"}, "channel": {"id": "C1"},
                                     "actions": [{"action_id": "something_else", "type": "button", "value": "x"}],
                                     "container": {"type": "message", "message_ts": base["ts"], "channel_id": "C1"},
                                     "message": {"ts": base["ts"], "text": "hi"}})
    later = await rig.mention("[ok] how do returns work?", user="U2")  # the probe: an ordinary question
    await rig.wait_answer(later["ts"])
    await rig.relay.wait_idle()  # so every malformed event before it has been handled
    null_text = broken[7]
    assert [(m["thread_ts"], m["text"]) for m in rig.fake.posted_messages() if m["thread_ts"] != later["ts"]] == [
        (null_text["ts"], EMPTY)]
    assert len(rig.posts_in(later["ts"])) == 1
    assert [q["message"] for q in rig.questions()] == ["[ok] how do returns work?"]
    dropped = [r for r in caplog.records if r.levelno == logging.WARNING and "dropped: no usable" in r.getMessage()]
    assert len(dropped) == 8, [r.getMessage() for r in dropped]  # the 9 broken mentions but text=None
    # Questions never reach bolt, which could not build a request whose user or channel is a number (slack_sdk
    # logged that at ERROR with a traceback): each is one WARNING line like the others.
    assert errors(caplog) == []


# ---- Discord -------------------------------------------------------------------------------------------------------


async def _mention(h: DiscordHarness, text: str, **kwargs: Any) -> dict[str, Any]:
    return await h.fake.user_message(channel_id=TEXT_ID, guild_id=GUILD_ID, author_id=USER_ID, mentions_bot=True,
                                     content=f"<@{h.fake.bot_id}> {text}", **kwargs)


async def _command(h: DiscordHarness, name: str, sub: str, **options: str) -> dict[str, Any]:
    """Run a slash command as the admin and return the first response (content and ephemeral flag)."""
    before = len(h.fake.interaction_responses)
    await h.fake.slash_command(name=name, subcommand=sub, user_id=ADMIN_ID, channel_id=TEXT_ID, guild_id=GUILD_ID,
                               options=[{"name": k, "value": v} for k, v in options.items()])
    [first] = await h.fake.wait_for(lambda: h.fake.interaction_responses[before:], what=f"/{name} {sub}")
    return {"content": first["data"]["content"], "ephemeral": first["ephemeral"]}


async def test_discord_empty_blank_and_oversized_questions_get_one_clear_reply_each(
    sim: Simulator, uppzy: UppzyClient, tmp_path: Path
) -> None:
    """Sent: a bare mention, blank and control-only mentions, a 40,000-character mention, a blank DM, and the bare
    mention redelivered; asserted: one clear reply each, in place (no thread), and Uppzy never asked."""
    async with discord_harness(sim, uppzy, tmp_path) as h:
        bare = await _mention(h, "")
        for text in (BLANK, CONTROL_ONLY, HUGE):
            await _mention(h, text)
        await h.fake.redeliver(bare)
        dm = await h.fake.user_message(channel_id=h.fake.new_id(), author_id=USER_ID, content=BLANK)
        posts = await h.fake.wait_for(lambda: len(h.posts(TEXT_ID)) >= 4 and h.posts(TEXT_ID), what="4 replies")
        await h.fake.wait_for(lambda: h.posts(dm["channel_id"]), what="the DM reply")
        await h.drain()  # a second reply (to the redelivery, say) would be posted by now
        assert [p["content"] for p in h.posts(TEXT_ID)] == [messages.EMPTY_MESSAGE] * 3 + [messages.too_long(4000)]
        assert [p["content"] for p in h.posts(dm["channel_id"])] == [messages.EMPTY_MESSAGE]
        assert all(p["message_reference"] for p in posts)
        assert h.chats() == [] and h.fake.calls("POST", r"/channels/\d+/messages/\d+/threads") == []


async def test_discord_slash_options_with_odd_unicode_and_unknown_keys_get_clear_replies(
    sim: Simulator, uppzy: UppzyClient, tmp_path: Path
) -> None:
    """Sent: /uppzy-admin set with an unknown key, a value holding a lone surrogate, NUL and BEL, a broken duration,
    and /uppzy-admin channel with a broken mode; asserted: each gets one clear ephemeral reply."""
    keys = ", ".join(SETTING_KEYS)
    async with discord_harness(sim, uppzy, tmp_path) as h:
        reply = await _command(h, "uppzy-admin", "set", key="colour", value="blue")
        assert reply == {"content": dmsgs.setting_invalid(f"unknown setting 'colour'; settable keys: {keys}"),
                         "ephemeral": True}
        reply = await _command(h, "uppzy-admin", "set", key="fallback_text", value="Sorry \ud83d\x00\x07, later")
        assert reply == {"content": dmsgs.setting_saved("fallback_text", "Sorry \ufffd, later"), "ephemeral": True}
        reply = await _command(h, "uppzy-admin", "set", key="idle_timeout", value="\ud800\x07")
        assert reply["ephemeral"] and reply["content"].startswith("Not saved:") and "45s, 30m or 2h" in \
            reply["content"]
        reply = await _command(h, "uppzy-admin", "channel", mode="\ud800")
        assert reply["ephemeral"] and "mention, all, off" in reply["content"]
        check_texts(r["data"]["content"] for r in h.fake.interaction_responses)


async def test_discord_malformed_events_are_dropped_and_the_bot_keeps_answering(
    sim: Simulator, uppzy: UppzyClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent: an unknown dispatch type, a click on a button with an unknown custom_id, MESSAGE_CREATEs with a number
    for content, without an author and with a non-numeric channel id; asserted: each is a logged drop (the gateway
    reconnects on a new session if discord.py cannot parse one), and a normal question afterwards is answered."""
    caplog.set_level(logging.INFO, logger="bots")
    # Each unparseable event restarts the shard's session: IDENTIFYs paced 0.05 s apart here (Discord's is 5 s).
    async with discord_harness(sim, uppzy, tmp_path, reconnect_delay=0.05, identify_window=0.05) as h:
        h.allow_errors = True  # the parse failures are logged at ERROR on purpose; checked below
        fake = h.fake
        await fake.dispatch("SOME_FUTURE_EVENT", {"id": "1", "anything": [1, 2, 3]})
        await fake.component_click(custom_id="from:an-old-version", message_id=fake.new_id(), channel_id=TEXT_ID,
                                   user_id=USER_ID, guild_id=GUILD_ID)
        template = await _mention(h, "[first] how do returns work?")
        await h.wait_posts(template["id"])
        identifies = fake.identify_count
        # A number for content fails in on_message; a missing author or a bad channel id fails discord.py's parser,
        # which (in our bot) drops the event and reconnects on a fresh session: one more IDENTIFY each.
        for change, sessions in (({"content": 12345}, 0), ({"author": None}, 1), ({"channel_id": "not-a-number"}, 2)):
            payload = {**copy.deepcopy(template), "id": str(fake.new_id()), **change}
            await fake.dispatch("MESSAGE_CREATE", {k: v for k, v in payload.items() if v is not None})
            await fake.wait_for(lambda n=identifies + sessions: fake.identify_count == n and fake.connected,
                                what=f"the gateway back on session {identifies + sessions}")
        later = await _mention(h, "[later] how do returns work?")  # the probe: an ordinary question
        await h.wait_posts(later["id"])
        assert h.relay is not None
        await h.relay.wait_idle()  # so every malformed event before it has been handled
        assert [c.body["message"] for c in h.chats()] == ["[first] how do returns work?", "[later] how do returns "
                                                                                            "work?"]
        assert fake.identify_count == identifies + 2  # one fresh session per unparseable MESSAGE_CREATE
        assert any("custom_id='from:an-old-version'" in r.getMessage() for r in caplog.records)
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert logged and all(m.startswith("discord.py failed on a gateway event") or "on_message" in m
                              for m in logged), logged
        assert h.bot is not None and h.bot.connected
