"""Issue 12's whole journey with the REAL bot (`python -m bots run`, "Add to Slack" HTTP mode, a SQLite file): install
two teams, answer each with its own token, connect one to its own Uppzy key through the App Home modal, uninstall the
other, rotate SECRETS_KEY and restart, and find no secret in clear in the database files or in the bot's output."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from cryptography.fernet import Fernet

from simulator import Simulator
from simulator.keys import key_fingerprint
from tests.fakes.slack_fake import ApiCall, FakeSlack, sign
from tests.slack.test_slack_distribution import install, post_event

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_KEY = "uk_deploy_7d1c9e3b5a2f4e6d8c0b1a3f5e7d9c2b"  # the deployment's UPPZY_API_KEY (demo-site)
KEY_B = "uk_team2_4a6c8e0f2b4d6f8a0c2e4b6d8f0a2c4e"  # T2's own key, bound to site-b only
SITE_B = "site-b"
K1, K2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
ADMIN, MEMBER = "UADMIN2", "UMEMBER2"  # T2's workspace admin and a plain member
# The same user and channel ids in both teams (a Slack Connect channel, an Enterprise Grid user): their
# conversations must still never share an Uppzy session.
ASKER = {"T2": "USAMEASK", "T3": "USAMEASK"}
CHANNEL = "CSHARED"
WAIT = 10.0  # a real process polls Uppzy on its own schedule


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bot:
    """`python -m bots run` in "Add to Slack" HTTP mode, configured only by its environment; output to run-N.log."""

    def __init__(self, tmp_path: Path, sim: Simulator, fake: FakeSlack) -> None:
        self.dir = tmp_path
        self.db = tmp_path / "bot.db"
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_"))}
        self.env.update(
            SLACK_CLIENT_ID=fake.client_id, SLACK_CLIENT_SECRET=fake.client_secret,
            SLACK_SIGNING_SECRET=fake.signing_secret, SLACK_API_BASE_URL=fake.api_url,
            UPPZY_BASE_URL=sim.base_url, UPPZY_API_KEY=DEPLOY_KEY, UPPZY_SITE_ID="demo-site",
            DATABASE_URL=f"sqlite:///{self.db}", PORT=str(port), PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT),
        )
        self.runs = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, *, secrets_key: str, log_level: str) -> subprocess.Popen[bytes]:
        """One more process on the same database (its output: run-N.log)."""
        self.runs += 1
        with (self.dir / f"run-{self.runs}.log").open("wb") as log:
            return subprocess.Popen([sys.executable, "-m", "bots", "run"], cwd=self.dir,
                                    env={**self.env, "SECRETS_KEY": secrets_key, "LOG_LEVEL": log_level},
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    async def start(self, *, secrets_key: str, log_level: str = "INFO") -> None:
        """Start one more process on the same database and wait until /readyz says it serves."""
        self.proc = self.spawn(secrets_key=secrets_key, log_level=log_level)
        deadline = time.monotonic() + 15
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc.poll() is None, self.log()
                try:
                    async with http.get(self.base + "/readyz") as r:
                        if r.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, f"not ready within 15 s:\n{self.log()}"
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM and wait for a clean exit."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(self.proc.wait, 10) == 0, self.log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def log(self, run: int | None = None) -> str:
        return (self.dir / f"run-{run or self.runs}.log").read_text(errors="replace")

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the database file as another process would."""
        with sqlite3.connect(self.db, timeout=5) as conn:
            return conn.execute(sql).fetchall()

    def secrets_rotate(self, secrets_key: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bots", "secrets", "rotate"], cwd=self.dir,
                              env={**self.env, "SECRETS_KEY": secrets_key}, capture_output=True, text=True,
                              timeout=30, check=False)


@pytest.fixture
async def world(make_sim: Callable[..., Awaitable[Simulator]], tmp_path: Path
                ) -> AsyncIterator[tuple[Simulator, FakeSlack, Bot]]:
    """The simulator (the deployment's key on demo-site, KEY_B on site-b), FakeSlack with T2 and T3, a Bot."""
    sim = await make_sim(api_key=DEPLOY_KEY, keys={KEY_B: (SITE_B,)})
    async with FakeSlack() as fake:
        for team in ("T2", "T3"):
            fake.add_team(team)
        fake.add_user(ADMIN, name="ada", is_admin=True, team_id="T2")
        fake.add_user(MEMBER, name="bob", team_id="T2")
        bot = Bot(tmp_path, sim, fake)
        try:
            yield sim, fake, bot
        finally:
            bot.kill()


async def ask(fake: FakeSlack, bot: Bot, team: str, text: str) -> ApiCall:
    """A mention in `team`; returns the chat.postMessage that answered it in its thread."""
    event = fake.app_mention_event(ASKER[team], CHANNEL, text, team_id=team)
    assert await post_event(fake, bot.base, event, team) == 200
    answered = await fake.wait_until(
        lambda: [c for c in fake.calls_to("chat.postMessage")
                 if c.ok and c.args.get("thread_ts") == event["ts"] and c.args.get("metadata")],
        timeout=WAIT, what=f"the answer to {team}'s {text!r}")
    return answered[0]


def uppzy_call(sim: Simulator, text: str) -> tuple[str | None, str]:
    """(key fingerprint, path) of the one chat_async that carried `text`."""
    [call] = [c for c in sim.calls("chat_async") if c.body["message"] == text]
    return call.key_id, call.path


def session_of(sim: Simulator, text: str) -> str:
    """The Uppzy session the question `text` was asked in."""
    [call] = [c for c in sim.calls("chat_async") if c.body["message"] == text]
    return str(call.body["session_id"])


async def interact(fake: FakeSlack, bot: Bot, team: str, payload: dict[str, Any]) -> tuple[int, str]:
    """POST an interactive payload of `team` to /slack/events, form-encoded and signed as Slack does."""
    raw = urlencode({"payload": json.dumps(fake.interactive_payload(payload, team_id=team))}).encode()
    headers = {**sign(fake.signing_secret, raw), "Content-Type": "application/x-www-form-urlencoded"}
    async with aiohttp.ClientSession() as http, http.post(bot.base + "/slack/events", data=raw,
                                                          headers=headers) as r:
        return r.status, await r.text()


def submission(user: str, site: str, key: str, metadata: str = "{}") -> dict[str, Any]:
    state = {"connect_site": {"site": {"type": "plain_text_input", "value": site}},
             "connect_key": {"api_key": {"type": "plain_text_input", "value": key}}}
    return {"type": "view_submission", "user": {"id": user},
            "view": {"callback_id": "uppzy_connect", "private_metadata": metadata, "state": {"values": state}}}


def clear_forms(secret: str) -> list[bytes]:
    """The secret as a file or log could hold it in clear: raw, hex (both cases), and base64 / url-safe base64 at
    any of the three alignments (the part of the encoding that does not depend on the bytes around it)."""
    raw = secret.encode()
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode()]
    for shift in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * shift + raw)
            start = (shift * 4 + 2) // 3  # characters that mix in the bytes before
            end = (len(b"\0" * shift + raw) // 3) * 4  # the last full group holds only the secret's bytes
            forms.append(encoded[start:end])
    return forms


def leaks(data: bytes, secrets: dict[str, str]) -> list[str]:
    """Names of the secrets found in `data` in any clear form."""
    return [name for name, value in secrets.items() if any(form in data for form in clear_forms(value))]


async def test_many_workspaces_journey_with_the_real_bot(world: tuple[Simulator, FakeSlack, Bot]) -> None:
    sim, fake, bot = world
    await bot.start(secrets_key=K1, log_level="DEBUG")

    # 1. two teams install through the bot's own /slack/install and /slack/oauth_redirect
    tokens = {team: await install(fake, bot.base, team) for team in ("T2", "T3")}
    assert tokens["T2"] != tokens["T3"]
    assert sorted(r[0] for r in bot.rows("SELECT team_id FROM installations")) == ["T2", "T3"]

    # 2. each mention is answered in its thread with that team's own token (and the deployment's Uppzy key)
    for team in ("T2", "T3"):
        call = await ask(fake, bot, team, f"returns for {team}?")
        assert (call.team_id, call.token) == (team, tokens[team])
        assert uppzy_call(sim, f"returns for {team}?")[0] == key_fingerprint(DEPLOY_KEY)
    assert session_of(sim, "returns for T2?") != session_of(sim, "returns for T3?")  # no shared conversation

    # 3. T2's admin opens "Connect Uppzy" from the App Home; a plain member's forged submission is refused first
    press = {"type": "block_actions", "user": {"id": ADMIN}, "view": {"type": "home", "id": "VHOME2"},
             "actions": [{"action_id": "uppzy_home_connect", "block_id": "b", "type": "button", "value": "D2"}]}
    assert (await interact(fake, bot, "T2", press))[0] == 200
    [opened] = await fake.wait_for("views.open", timeout=WAIT)
    assert (opened.team_id, opened.token) == ("T2", tokens["T2"])
    modal = opened.args["view"]
    assert [b["label"]["text"] for b in modal["blocks"] if b["type"] == "input"] == ["Site", "API key"]

    status, text = await interact(fake, bot, "T2", submission(MEMBER, SITE_B, KEY_B))
    assert status == 200 and '"response_action": "errors"' in text, f"a member's submission was not refused: {text!r}"
    assert "only workspace admins" in text and KEY_B not in text
    assert bot.rows("SELECT * FROM workspace_credentials") == [] and sim.calls("site", key=KEY_B) == []

    status, text = await interact(fake, bot, "T2", submission(ADMIN, SITE_B, KEY_B, modal["private_metadata"]))
    assert status == 200 and "errors" not in text, text  # accepted: the modal closes
    assert bot.rows("SELECT platform, workspace_id, site_id FROM workspace_credentials") == [("slack", "T2", SITE_B)]
    assert [c.status for c in sim.calls("site", key=KEY_B)] == [200]  # checked with Uppzy before it was saved

    # ... the next questions: T2's to site-b with its own key, T3's still to the deployment's
    for team, key, site in (("T2", KEY_B, SITE_B), ("T3", DEPLOY_KEY, "demo-site")):
        call = await ask(fake, bot, team, f"shipping for {team}?")
        assert (call.team_id, call.token) == (team, tokens[team])
        key_id, path = uppzy_call(sim, f"shipping for {team}?")
        assert key_id == key_fingerprint(key) and f"/sites/{site}/" in path, (team, path)

    # 4. T3 uninstalls: its installation and settings go; its later mention is not answered; T2 still is
    with sqlite3.connect(bot.db, timeout=5) as conn:  # a setting T3's admin saved earlier
        conn.execute("INSERT INTO workspace_settings VALUES ('slack', 'T3', 'reply_mode', 'all', 'U9', ?)",
                     (time.time(),))
    assert await post_event(fake, bot.base, fake.uninstall("T3"), "T3") == 200
    await fake.wait_until(lambda: not bot.rows("SELECT 1 FROM installations WHERE team_id='T3'"), timeout=WAIT,
                          what="T3's installation removed")
    await fake.wait_until(lambda: not bot.rows("SELECT 1 FROM workspace_settings WHERE workspace_id='T3'"),
                          timeout=WAIT, what="T3's settings removed")
    gone = fake.app_mention_event(ASKER["T3"], CHANNEL, "anyone there for T3?", team_id="T3")
    assert await post_event(fake, bot.base, gone, "T3") == 200
    call = await ask(fake, bot, "T2", "still there for T2?")  # answered after T3's mention was handled
    assert (call.team_id, call.token) == ("T2", tokens["T2"])
    assert uppzy_call(sim, "still there for T2?")[0] == key_fingerprint(KEY_B)
    assert not [c for c in fake.calls if c.args.get("thread_ts") == gone["ts"] or c.args.get("ts") == gone["ts"]]
    assert not [c for c in sim.calls("chat_async") if c.body["message"] == "anyone there for T3?"]

    # 5. stop; rotate SECRETS_KEY to K2 (K1 still opens); start with K2 alone: T2 answered with its token and key
    await bot.stop()
    rotated = bot.secrets_rotate(f"{K2},{K1}")
    assert rotated.returncode == 0 and rotated.stderr == "", rotated
    assert rotated.stdout.strip() == "2 secrets re-encrypted with the first SECRETS_KEY key (0 already were)"
    await bot.start(secrets_key=K2)
    call = await ask(fake, bot, "T2", "after the rotation?")
    assert (call.team_id, call.token) == ("T2", tokens["T2"])
    key_id, path = uppzy_call(sim, "after the rotation?")
    assert key_id == key_fingerprint(KEY_B) and f"/sites/{SITE_B}/" in path
    await bot.stop()

    # 6. no secret in clear: not in the database files, not in any output (run 1 at DEBUG), not from rotate
    issued = {f"token {t.team_id}/{t.kind}": t.value for t in fake.tokens.values() if t.team_id in ("T2", "T3")}
    assert len(issued) == 2
    secrets = {**issued, "client secret": fake.client_secret, "signing secret": fake.signing_secret,
               "deployment key": DEPLOY_KEY, "T2's key": KEY_B, "K1": K1, "K2": K2}
    files = [p for p in bot.dir.iterdir() if p.name.startswith("bot.db")]
    assert bot.db in files
    for path in files:
        assert leaks(path.read_bytes(), secrets) == [], path.name
    for run in (1, 2):
        assert leaks(bot.log(run).encode(), secrets) == [], f"run {run} printed a secret"
        assert "Traceback" not in bot.log(run)
    assert leaks((rotated.stdout + rotated.stderr).encode(), secrets) == []
