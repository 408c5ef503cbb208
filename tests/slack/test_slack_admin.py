"""The /uppzy slash command, the App Home tab and the settings modal, for admins and everyone else."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.slack_support import SlackRig



async def test_help_status_and_end_work_for_everyone(rig: SlackRig) -> None:
    """Any user gets help and status, and can end their own conversation in a channel."""
    assert "/uppzy set" in await rig.command("help", user="U1")
    assert "/uppzy status" in await rig.command("", user="U1")
    event = await rig.mention("a question")
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    status = await rig.command("status", user="U1")
    assert "reachable" in status and "Open conversations: 1" in status and "`site_id` = `demo-site`" in status
    assert "Conversation ended" in await rig.command("end", user="U1")
    assert [c.body["session_id"] for c in rig.sim.calls("session_close")] == ["slack-user-U1-C1"]
    assert "no open conversation" in await rig.command("end", user="U1")


async def test_non_admins_are_refused_and_nothing_changes(rig: SlackRig) -> None:
    """set, reset, channel and sessions from a non-admin get a polite refusal and change nothing."""
    rig.fake.add_user("U1", name="ada")
    for command in ("set reply_mode all", "reset reply_mode", "channel all", "sessions"):
        assert "only workspace admins" in await rig.command(command, user="U1")
    settings = await rig.relay.workspaces.get("slack", "T1")
    assert settings.reply_mode == "mention"
    assert await rig.relay.workspaces.channel_mode("slack", "T1", "C1") == "mention"


async def test_workspace_admins_and_configured_admins_may_change_settings(rig: SlackRig) -> None:
    """A Slack workspace admin (users.info) and a SLACK_ADMIN_USER_IDS user can both set values."""
    rig.fake.add_user("U5", name="grace", is_admin=True)
    assert "`idle_timeout` is now `45 minutes`" in await rig.command("set idle_timeout 45m", user="U5")
    assert "`fallback_text` is now `Ask #help &amp; co`" in await rig.command(
        "set fallback_text Ask #help &amp; co", user="U9")
    assert (await rig.relay.workspaces.get("slack", "T1")).fallback_text == "Ask #help & co"
    assert "back to its default" in await rig.command("reset idle_timeout", user="U9")
    assert (await rig.relay.workspaces.get("slack", "T1")).idle_timeout == 1800


async def test_bad_values_list_what_is_accepted(rig: SlackRig) -> None:
    """Unknown keys, bad values and bad modes are answered with the accepted values; weird input never crashes."""
    assert "settable keys: site_id" in await rig.command("set colour blue", user="U9")
    assert "must be a duration" in await rig.command("set idle_timeout forever", user="U9")
    assert "must be one of: mention, all, off" in await rig.command("channel loud", user="U9")
    assert "Usage: `/uppzy set <key> <value>`" in await rig.command("set", user="U9")
    assert "inside the channel" in await rig.command("channel all", user="U9", channel="D9")
    assert "I don't know" in await rig.command("\x00\u202e' \"unterminated " + "x" * 5000, user="U1")


async def test_sessions_lists_a_users_conversations(rig: SlackRig) -> None:
    """An admin sees the Uppzy session list for the mentioned user."""
    event = await rig.mention("hello", user="U1")
    await rig.wait_answer(event["ts"])
    reply = await rig.command("sessions <@U1|ada>", user="U9")
    assert "Conversations for <@U1>" in reply and "`slack-user-U1-C1`: open" in reply
    assert "No conversations found" in await rig.command("sessions <@U7>", user="U9")


def _home_opened(user: str) -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": f"D{user[1:]}", "tab": "home", "event_ts": "1.2"}


async def test_home_tab_shows_settings_only_to_admins(rig: SlackRig) -> None:
    """Everyone gets the intro and 'end my conversation'; admins also get the settings and an edit button."""
    rig.fake.add_user("U1", name="ada")
    await rig.fake.send_event(_home_opened("U1"))
    await rig.fake.send_event(_home_opened("U9"))
    await rig.fake.wait_until(lambda: len(rig.fake.home_tabs) == 2, what="two home tabs")
    user_view = rig.fake.views[rig.fake.home_tabs["U1"]]
    admin_view = rig.fake.views[rig.fake.home_tabs["U9"]]
    action_ids = [e["action_id"] for b in admin_view["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert action_ids == ["uppzy_home_end", "uppzy_home_edit"]
    assert "uppzy_home_edit" not in json.dumps(user_view) and "uppzy_home_end" in json.dumps(user_view)
    assert "*site_id*: `demo-site`" in json.dumps(admin_view)


async def test_settings_modal_validates_then_saves(rig: SlackRig) -> None:
    """The modal shows errors inline and saves nothing until every value is valid, then refreshes Home."""
    fake = rig.fake
    press = {"type": "block_actions", "user": {"id": "U9"}, "view": {"type": "home", "id": "VHOME"},
             "actions": [{"action_id": "uppzy_home_edit", "block_id": "b", "type": "button", "value": "D9"}]}
    await fake.send_interactive(press)
    [opened] = await fake.wait_for("views.open")
    modal = opened.args["view"]
    values = {b["block_id"]: b["element"]["initial_value"] for b in modal["blocks"]}
    assert values["setting_idle_timeout"] == "30m" and values["setting_reply_mode"] == "mention"

    def submit(**changes: str) -> dict[str, Any]:
        state = {block: {"value": {"type": "plain_text_input", "value": changes.get(block[8:], value)}}
                 for block, value in values.items()}
        return {"type": "view_submission", "user": {"id": "U9"},
                "view": {"id": opened.response["view"]["id"], "callback_id": "uppzy_settings",
                         "private_metadata": modal["private_metadata"], "state": {"values": state}}}

    bad = await fake.wait_for_ack(await fake.send_interactive(submit(idle_timeout="forever", reply_mode="all")))
    assert bad["payload"]["response_action"] == "errors"
    assert set(bad["payload"]["errors"]) == {"setting_idle_timeout"}
    assert (await rig.relay.workspaces.get("slack", "T1")).reply_mode == "mention"
    good = await fake.wait_for_ack(await fake.send_interactive(submit(idle_timeout="2h", reply_mode="all",
                                                                      escalation_target="")))
    assert good["payload"] is None
    await fake.wait_until(lambda: "U9" in fake.home_tabs, what="home refreshed")
    saved = await rig.relay.workspaces.get("slack", "T1")
    assert (saved.idle_timeout, saved.reply_mode) == (7200, "all")
    assert "Settings saved." in json.dumps(fake.views[fake.home_tabs["U9"]])


async def test_home_end_button_closes_the_direct_message_conversation(rig: SlackRig) -> None:
    """'End my conversation' on the Home tab closes the DM session and says so on the tab."""
    event = await rig.message("hi there", channel="D1")
    await rig.wait_answer(event["ts"])
    await rig.relay.wait_idle()
    press = {"type": "block_actions", "user": {"id": "U1"}, "view": {"type": "home", "id": "VHOME1"},
             "actions": [{"action_id": "uppzy_home_end", "block_id": "b", "type": "button", "value": "D1"}]}
    await rig.fake.send_interactive(press)
    await rig.fake.wait_until(lambda: "U1" in rig.fake.home_tabs, what="home refreshed")
    assert "Conversation ended" in json.dumps(rig.fake.views[rig.fake.home_tabs["U1"]])
    assert [c.body["session_id"] for c in rig.sim.calls("session_close")] == ["slack-user-U1-D1"]


async def test_reset_accepts_the_key_as_set_does(rig: SlackRig) -> None:
    """`/uppzy set idle-timeout 45m` and `/uppzy reset idle-timeout` both work, and the reply names the default."""
    assert "`idle_timeout` is now `45 minutes`" in await rig.command("set idle-timeout 45m", user="U9")
    reply = await rig.command("reset idle-timeout", user="U9")
    assert "unknown setting" not in reply and "`idle_timeout`" in reply and "30 minutes" in reply, reply
    assert (await rig.relay.workspaces.get("slack", "T1")).idle_timeout == 1800
