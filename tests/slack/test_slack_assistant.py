"""Slack's agent messaging experience: the Messages tab opens with the workspace's suggested prompts, each message
there is a thread root answered in its thread and titled after its question, and a pending answer shows a status
with loading messages, kept alive past Slack's timeout and cleared once the answer is posted."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from bots.slack.assistant import LOADING_MESSAGES, prompts_of, thread_title
from core.setting_parsers import DEFAULT_SUGGESTED_PROMPTS, SettingError, prompt_list
from tests.slack_support import parse_manifest

if TYPE_CHECKING:
    from tests.slack_support import RigFactory, SlackRig

ROOT = Path(__file__).resolve().parent.parent.parent


def test_manifest_declares_the_agent_view_not_the_old_assistant_view() -> None:
    """features.agent_view with a description and title/message prompts; no assistant_view (refused for new apps)."""
    features = parse_manifest((ROOT / "manifest.yml").read_text(encoding="utf-8"))["features"]
    assert "assistant_view" not in features
    view = features["agent_view"]
    assert view["agent_description"].strip()
    assert 1 <= len(view["suggested_prompts"]) <= 4
    assert all(set(p) == {"title", "message"} and p["title"] and p["message"] for p in view["suggested_prompts"])
    assert features["app_home"]["messages_tab_enabled"] is True


def test_the_prompt_setting_reads_titles_and_messages_and_refuses_too_many() -> None:
    """'a | Title :: b' is two prompts (a titled by itself); none shows nothing; five or an empty half is refused."""
    value = prompt_list("  How do I reset my password? |Refunds::How long do refunds take? ")
    assert value == "How do I reset my password? | Refunds :: How long do refunds take?"
    assert prompts_of(value) == [
        {"title": "How do I reset my password?", "message": "How do I reset my password?"},
        {"title": "Refunds", "message": "How long do refunds take?"}]
    assert prompt_list("none") == "" and prompts_of("") == []
    assert prompt_list(value) == value  # what is stored reads back the same
    for bad in ("a|b|c|d|e", "Title ::", ":: message"):
        try:
            prompt_list(bad)
        except SettingError as exc:
            assert "prompts separated by |" in str(exc) and "\n" not in str(exc)
        else:
            raise AssertionError(f"{bad!r} accepted")
    assert thread_title("  \nWhat is our refund policy for annual plans bought through a reseller in Europe?") \
        == "What is our refund policy for annual plans bought through…"


async def test_opening_the_messages_tab_offers_the_workspace_prompts_that_admins_change(rig: SlackRig) -> None:
    """Messages tab opened → the default prompts; an admin sets new ones (/uppzy set) → the next opening shows
    those; 'none' → no prompts call at all. The Home tab's own opening sets no prompts."""
    await rig.fake.send_event(rig.fake.messages_tab_opened_event("U1"))
    shown = await rig.fake.wait_until(lambda: rig.fake.suggested_prompts.get("D1"), what="the default prompts")
    assert shown == prompts_of(DEFAULT_SUGGESTED_PROMPTS)
    [call] = rig.fake.calls_to("assistant.threads.setSuggestedPrompts")
    assert "thread_ts" not in call.args  # with agent_view, a thread_ts makes Slack ignore the call

    reply = await rig.command("set suggested_prompts Reset my password | Refunds :: How long do refunds take?",
                              user="U9")
    assert "Refunds :: How long do refunds take?" in reply
    await rig.fake.send_event(rig.fake.messages_tab_opened_event("U2"))
    shown = await rig.fake.wait_until(lambda: rig.fake.suggested_prompts.get("D2"), what="the admin's prompts")
    assert shown == [{"title": "Reset my password", "message": "Reset my password"},
                     {"title": "Refunds", "message": "How long do refunds take?"}]
    described = dict((key, value) for key, value, _ in await rig.relay.describe_settings("slack", rig.fake.team_id))
    assert described["suggested_prompts"] == "Reset my password | Refunds :: How long do refunds take?"

    assert "none" in await rig.command("set suggested_prompts none", user="U9")
    await rig.fake.send_event(rig.fake.messages_tab_opened_event("U3"))
    home = {"type": "app_home_opened", "user": "U4", "channel": "D4", "tab": "home", "event_ts": "1.2"}
    await rig.fake.send_event(home)
    await rig.fake.wait_until(lambda: rig.fake.calls_to("views.publish"), what="the Home tab published")
    await rig.drain()
    assert len(rig.fake.calls_to("assistant.threads.setSuggestedPrompts")) == 2
    assert "D3" not in rig.fake.suggested_prompts and "D4" not in rig.fake.suggested_prompts


async def test_each_message_in_the_messages_tab_is_a_thread_titled_after_its_question(rig: SlackRig) -> None:
    """A top-level DM message is answered in its own thread, which gets the question as its title; a follow-up in
    that thread keeps the title; a second top-level message is a second thread with its own title."""
    first = await rig.message("How long do refunds take?\nI paid by card.", channel="D1")
    [answer] = await rig.wait_answer(first["ts"])
    assert answer["thread_ts"] == first["ts"]
    await rig.fake.wait_until(lambda: rig.fake.thread_titles.get(("D1", first["ts"])), what="the title")
    assert rig.fake.thread_titles[("D1", first["ts"])] == "How long do refunds take?"

    follow_up = await rig.message("And for annual plans?", channel="D1", thread_ts=first["ts"])
    await rig.wait_answer(first["ts"], count=2)
    second = await rig.message("What are your opening hours?", channel="D1")
    await rig.wait_answer(second["ts"])
    await rig.fake.wait_until(lambda: rig.fake.thread_titles.get(("D1", second["ts"])), what="the second title")
    await rig.relay.wait_idle()
    titles = [(c.args["thread_ts"], c.args["title"]) for c in rig.fake.calls_to("assistant.threads.setTitle")]
    assert titles == [(first["ts"], "How long do refunds take?"), (second["ts"], "What are your opening hours?")]
    assert follow_up["ts"] not in rig.fake.thread_titles.values()


async def test_a_slow_answer_keeps_its_status_with_loading_messages_until_it_is_posted(
        make_rig: RigFactory) -> None:
    """Pending longer than the refresh interval: setStatus with loading messages, sent again before Slack would
    drop it (the fake drops it after its lifetime, as Slack does after two minutes), so it is still shown right up
    to the answer; then cleared, and no refresh follows."""
    rig = await make_rig(working_after=0.1)
    rig.bot.adapter.status.refresh = 0.2  # production: every 90 s, inside Slack's two minutes
    rig.fake.status_lifetime = 0.35
    rig.sim.script("refund", "Refunds take 5 days.", latency=1.2)
    event = await rig.message("summarise our refund policy", channel="D1")
    [answer] = await rig.wait_answer(event["ts"])
    await rig.fake.wait_until(lambda: rig.fake.calls_to("assistant.threads.setStatus")
                              and rig.fake.calls_to("assistant.threads.setStatus")[-1].args["status"] == "",
                              what="the status cleared")
    await rig.relay.wait_idle()
    calls = rig.fake.calls_to("assistant.threads.setStatus")
    shown, cleared = calls[:-1], calls[-1]
    assert len(shown) >= 3, [c.args for c in calls]  # set, then refreshed while the answer took 1.2 s
    assert all(c.args["status"] == "is thinking…" and c.args["loading_messages"] == list(LOADING_MESSAGES)
               and c.args["thread_ts"] == event["ts"] and c.args["channel_id"] == "D1" for c in shown)
    posted = next(c for c in rig.fake.calls_to("chat.postMessage") if c.args.get("metadata"))
    assert all(later.at - earlier.at < rig.fake.status_lifetime for earlier, later in pairwise(shown))
    assert posted.at - shown[-1].at < rig.fake.status_lifetime  # still shown when the answer came
    assert cleared.at >= posted.at and "loading_messages" not in cleared.args
    assert rig.fake.status_shown("D1", event["ts"]) == "" and answer["thread_ts"] == event["ts"]
    assert rig.bot.adapter.status.pending() == 0
    await rig.drain(channel="D1")
    assert rig.fake.calls_to("assistant.threads.setStatus")[-1].args["status"] == ""


async def test_a_fast_answer_in_the_messages_tab_sets_no_status(rig: SlackRig) -> None:
    """Answered before the moment (the simulator answers at once): no status, only the title and the answer."""
    event = await rig.message("what are your opening hours?", channel="D1")
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    assert rig.fake.calls_to("assistant.threads.setStatus") == []
