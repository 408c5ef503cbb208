"""App Home "Connect Uppzy": admins connect the workspace to its own Uppzy site and key through a modal; the key is
checked with Uppzy (the simulator with extra keys), stored sealed, never echoed or logged; non-admins are refused."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bots.runner import build_connector
from core.config import Secret
from core.secrets_box import SecretBox
from simulator import Simulator
from tests.slack_support import RigFactory, SlackRig

KEY_B = "sk-live-bbbbbbbb-2f9c41"  # bound to SITE_B only
SITE_B = "site-b"


@pytest.fixture
async def sim(make_sim: Callable[..., Any]) -> Simulator:
    """The simulator with a second key bound to its own site (overrides the shared fixture for the rig)."""
    return await make_sim(keys={KEY_B: (SITE_B,)})


@pytest.fixture
async def rig(make_rig: RigFactory, caplog: pytest.LogCaptureFixture) -> SlackRig:
    """The bot built with every log at DEBUG (bolt pins its loggers' level when the app is made), U9 an admin."""
    caplog.set_level(logging.DEBUG)
    return await make_rig(admins=("U9",))


class Changes(list[tuple[str, str]]):
    """What on_change was told (the credentials cache would drop these entries)."""

    def __call__(self, platform: str, workspace: str) -> None:
        self.append((platform, workspace))


@pytest.fixture
async def connected(rig: SlackRig, sim: Simulator) -> tuple[SlackRig, SecretBox, Changes]:
    """The rig's bot with a connector (SECRETS_KEY set, keys checked against the simulator)."""
    changes = Changes()
    secrets_key = Fernet.generate_key().decode()
    settings = dataclasses.replace(rig.bot.settings, uppzy_base_url=sim.base_url,
                                   secrets_key=Secret(secrets_key))
    rig.bot.admin.connector = build_connector(settings, rig.relay.store, on_change=changes)
    return rig, SecretBox([secrets_key]), changes


def _home_opened(user: str) -> dict[str, Any]:
    return {"type": "app_home_opened", "user": user, "channel": f"D{user[1:]}", "tab": "home", "event_ts": "1.2"}


async def _open_modal(rig: SlackRig, user: str = "U9") -> dict[str, Any]:
    press = {"type": "block_actions", "user": {"id": user}, "view": {"type": "home", "id": "VHOME"},
             "actions": [{"action_id": "uppzy_home_connect", "block_id": "b", "type": "button", "value": "D9"}]}
    await rig.fake.send_interactive(press)
    [opened] = await rig.fake.wait_for("views.open")
    return opened.args["view"]


async def _submit(rig: SlackRig, site: str, key: str, *, user: str = "U9", metadata: str = "{}") -> Any:
    state = {"connect_site": {"site": {"type": "plain_text_input", "value": site}},
             "connect_key": {"api_key": {"type": "plain_text_input", "value": key}}}
    body = {"type": "view_submission", "user": {"id": user},
            "view": {"callback_id": "uppzy_connect", "private_metadata": metadata, "state": {"values": state}}}
    ack = await rig.fake.wait_for_ack(await rig.fake.send_interactive(body))
    return ack["payload"]


def _files_text(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


async def test_admin_connects_with_a_checked_key_stored_sealed(connected: tuple[SlackRig, SecretBox, Changes],
                                                               sim: Simulator, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The Home button opens a two-field modal; a good key is checked with Uppzy, sealed, and Home names the site."""
    caplog.set_level(logging.DEBUG)
    rig, box, changes = connected
    await rig.fake.send_event(_home_opened("U9"))
    await rig.fake.wait_until(lambda: "U9" in rig.fake.home_tabs, what="admin home")
    home = json.dumps(rig.fake.views[rig.fake.home_tabs["U9"]])
    assert "uppzy_home_connect" in home and "uses the deployment's Uppzy" in home

    modal = await _open_modal(rig)
    inputs = [(b["label"]["text"], b["element"]["type"]) for b in modal["blocks"] if b["type"] == "input"]
    assert inputs == [("Site", "plain_text_input"), ("API key", "plain_text_input")]

    assert await _submit(rig, f" {SITE_B} ", KEY_B, metadata=modal["private_metadata"]) is None  # closes the modal
    assert [c.status for c in sim.calls("site", key=KEY_B)] == [200]
    stored = await rig.relay.store.get_credentials("slack", "T1")
    assert stored is not None and stored[0] == SITE_B and box.open(stored[1]) == KEY_B
    assert changes == [("slack", "T1")]

    await rig.fake.wait_until(lambda: "site-b" in json.dumps(rig.fake.views[rig.fake.home_tabs["U9"]]),
                              what="home names the site")
    home = json.dumps(rig.fake.views[rig.fake.home_tabs["U9"]])
    assert "its own Uppzy site `site-b`" in home and "Connected to Uppzy site site-b" in home
    await rig.drain()
    sent = json.dumps([c.args for c in rig.fake.calls])
    assert KEY_B not in sent and KEY_B.encode() not in _files_text(tmp_path)
    assert all(KEY_B not in r.getMessage() for r in caplog.records), "the key was logged"


async def test_a_refused_key_is_shown_in_the_modal_and_nothing_is_stored(
        connected: tuple[SlackRig, SecretBox, Changes], sim: Simulator, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    """401 under the key, a key of another site (404) under the site, blanks under their field: nothing saved."""
    caplog.set_level(logging.DEBUG)
    rig, _box, changes = connected
    wrong = "sk-wrong-0000-secretish"
    refused = await _submit(rig, SITE_B, wrong)
    assert refused["response_action"] == "errors" and "refused this API key" in refused["errors"]["connect_key"]
    other_site = await _submit(rig, "demo-site", KEY_B)
    assert "cannot use site demo-site" in other_site["errors"]["connect_site"]
    assert "Enter the Uppzy site id" in (await _submit(rig, "  ", KEY_B))["errors"]["connect_site"]
    assert "Enter the Uppzy API key" in (await _submit(rig, SITE_B, ""))["errors"]["connect_key"]
    assert await rig.relay.store.get_credentials("slack", "T1") is None and changes == []
    for secret in (wrong, KEY_B):
        assert all(secret not in json.dumps(p) for p in (refused, other_site))
        assert all(secret not in r.getMessage() for r in caplog.records), "a key was logged"
        assert secret.encode() not in _files_text(tmp_path)


async def test_non_admins_never_see_the_button_and_a_forged_submission_is_refused(
        connected: tuple[SlackRig, SecretBox, Changes], sim: Simulator) -> None:
    """A plain member's Home has no Connect button, pressing it anyway opens nothing, and a submission is refused."""
    rig, _box, changes = connected
    rig.fake.add_user("U1", name="ada")
    await rig.fake.send_event(_home_opened("U1"))
    await rig.fake.wait_until(lambda: "U1" in rig.fake.home_tabs, what="member home")
    assert "uppzy_home_connect" not in json.dumps(rig.fake.views[rig.fake.home_tabs["U1"]])
    press = {"type": "block_actions", "user": {"id": "U1"}, "view": {"type": "home", "id": "VHOME1"},
             "actions": [{"action_id": "uppzy_home_connect", "block_id": "b", "type": "button", "value": "D1"}]}
    await rig.fake.wait_for_ack(await rig.fake.send_interactive(press))
    await rig.fake.wait_until(lambda: "only workspace admins" in json.dumps(rig.fake.views[rig.fake.home_tabs["U1"]]),
                              what="refusal on the member's home")
    assert rig.fake.calls_to("views.open") == []
    forged = await _submit(rig, SITE_B, KEY_B, user="U1")
    assert forged["response_action"] == "errors" and "only workspace admins" in forged["errors"]["connect_site"]
    assert await rig.relay.store.get_credentials("slack", "T1") is None and changes == []
    assert sim.calls("site", key=KEY_B) == []  # not even checked


async def test_workspace_admins_per_slack_may_connect(connected: tuple[SlackRig, SecretBox, Changes]) -> None:
    """A workspace admin per users.info (not in SLACK_ADMIN_USER_IDS) is accepted too."""
    rig, _box, _changes = connected
    rig.fake.add_user("U5", name="grace", is_admin=True)
    assert await _submit(rig, SITE_B, KEY_B, user="U5") is None
    assert (await rig.relay.store.get_credentials("slack", "T1") or ("",))[0] == SITE_B


async def test_without_secrets_key_the_admin_is_told_what_the_deployment_needs(rig: SlackRig, sim: Simulator) -> None:
    """No SECRETS_KEY: the modal says the deployment must set it; nothing is checked or stored."""
    settings = dataclasses.replace(rig.bot.settings, uppzy_base_url=sim.base_url, secrets_key=None)
    rig.bot.admin.connector = build_connector(settings, rig.relay.store)
    answer = await _submit(rig, SITE_B, KEY_B)
    assert "must set SECRETS_KEY" in answer["errors"]["connect_key"]
    assert await rig.relay.store.get_credentials("slack", "T1") is None and sim.calls("site") == []


@pytest.fixture
def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_uppzy_is_a_clear_retry_line(rig: SlackRig, unused_port: int) -> None:
    """Uppzy not reachable: "could not be reached; try again", within Slack's 3 seconds, nothing stored."""
    secrets_key = Fernet.generate_key().decode()
    settings = dataclasses.replace(rig.bot.settings, uppzy_base_url=f"http://127.0.0.1:{unused_port}",
                                   secrets_key=Secret(secrets_key))
    rig.bot.admin.connector = build_connector(settings, rig.relay.store)
    answer = await _submit(rig, SITE_B, KEY_B)
    assert "could not be reached; try again" in answer["errors"]["connect_key"]
    assert await rig.relay.store.get_credentials("slack", "T1") is None


async def test_without_a_connector_home_and_actions_are_unchanged(rig: SlackRig) -> None:
    """Single-workspace mode without SECRETS_KEY: no button; a stray submission is refused, nothing breaks."""
    await rig.fake.send_event(_home_opened("U9"))
    await rig.fake.wait_until(lambda: "U9" in rig.fake.home_tabs, what="admin home")
    assert "uppzy_home_connect" not in json.dumps(rig.fake.views[rig.fake.home_tabs["U9"]])
    assert (await _submit(rig, SITE_B, KEY_B))["response_action"] == "errors"
