"""Guards FakeSlack's many-workspace side: OAuth v2 install, per-team tokens, rotation, uninstall, per-team events,
driven by the real slack_sdk AsyncWebClient and slack-bolt's own OAuth flow."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_fake import FakeSlack, interactive_form, sign

REDIRECT = "https://bot.example.com/slack/oauth_redirect"
_ENV_TO_CLEAR = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                 "SLACK_SIGNING_SECRET", "SLACK_CLIENT_ID", "SLACK_CLIENT_SECRET")
# What auth.test answered for the fake's own team before teams existed: it must stay exactly this.
_DEFAULT_AUTH_TEST = {"ok": True, "url": "https://fake-team.slack.com/", "team": "Fake Team", "user": "uppzy",
                      "team_id": "T1", "user_id": "UBOT", "bot_id": "BBOT", "is_enterprise_install": False}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk routes even loopback calls through a proxy variable, and bolt reads SLACK_* silently."""
    for name in _ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    """A started fake with two more workspaces: T2 (plain) and T3 (token rotation)."""
    async with FakeSlack() as server:
        server.add_team("T2", name="Second")
        server.add_team("T3", name="Rotating", rotation=True, expires_in=43200)
        yield server


def _client(fake: FakeSlack, token: str | None = None) -> AsyncWebClient:
    return AsyncWebClient(base_url=fake.api_url, token=token)


async def _install(fake: FakeSlack, team_id: str, **authorize: Any) -> dict[str, Any]:
    """Authorize, then exchange the code through slack_sdk as an app would; returns the response data."""
    code = fake.authorize(team_id, **authorize)
    response = await _client(fake).oauth_v2_access(
        client_id=fake.client_id, client_secret=fake.client_secret, code=code,
        redirect_uri=authorize.get("redirect_uri"))
    return dict(response.data)  # type: ignore[arg-type]


async def _error(call: Any) -> str:
    with pytest.raises(SlackApiError) as caught:
        await call
    return str(caught.value.response["error"])


async def test_oauth_v2_access_installs_a_team_with_its_own_bot_token(fake: FakeSlack) -> None:
    """The documented response shape; the code works once; auth.test with the new token names the team."""
    code = fake.authorize("T2", user_id="U2ADMIN", scopes=["chat:write", "app_mentions:read"], redirect_uri=REDIRECT)
    client = _client(fake)
    data = (await client.oauth_v2_access(client_id=fake.client_id, client_secret=fake.client_secret, code=code,
                                         redirect_uri=REDIRECT)).data
    assert isinstance(data, dict)
    token = data.pop("access_token")
    assert token.startswith("xoxb-") and token != fake.bot_token
    assert data == {"ok": True, "app_id": "A1", "scope": "chat:write,app_mentions:read", "token_type": "bot",
                    "bot_user_id": "UBT2", "team": {"id": "T2", "name": "Second"}, "enterprise": None,
                    "is_enterprise_install": False, "authed_user": {"id": "U2ADMIN"}}
    [call] = fake.calls_to("oauth.v2.access")
    assert call.team_id == "T2" and call.headers["Authorization"].startswith("Basic ")
    assert await _error(client.oauth_v2_access(client_id=fake.client_id, client_secret=fake.client_secret,
                                               code=code, redirect_uri=REDIRECT)) == "invalid_code"
    auth = (await _client(fake, token).auth_test()).data
    assert isinstance(auth, dict)
    assert (auth["team_id"], auth["team"], auth["user_id"], auth["bot_id"], auth["is_enterprise_install"]) == (
        "T2", "Second", "UBT2", "BBT2", False)
    assert "enterprise_id" not in auth
    assert (await _client(fake, fake.bot_token).auth_test()).data == _DEFAULT_AUTH_TEST
    assert fake.team("T2").installed and fake.team("T2").installer_id == "U2ADMIN"


async def test_oauth_v2_access_errors_as_slack_names_them(fake: FakeSlack) -> None:
    """Wrong client id / secret, unknown code, redirect_uri not matching the authorize step."""
    client = _client(fake)
    code = fake.authorize("T2", redirect_uri=REDIRECT)
    good = {"client_id": fake.client_id, "client_secret": fake.client_secret, "code": code, "redirect_uri": REDIRECT}
    assert await _error(client.oauth_v2_access(**{**good, "client_id": "999.999"})) == "invalid_client_id"
    assert await _error(client.oauth_v2_access(**{**good, "client_secret": "nope"})) == "bad_client_secret"
    assert await _error(client.oauth_v2_access(**{**good, "code": "made-up"})) == "invalid_code"
    assert await _error(client.oauth_v2_access(**{**good, "redirect_uri": "https://evil.example/"})) == (
        "bad_redirect_uri")
    # Form fields instead of HTTP Basic work as well (Slack accepts both); the code is still good after the refusals.
    async with aiohttp.ClientSession() as session:
        async with session.post(fake.api_url + "oauth.v2.access", data=good) as response:
            body = await response.json()
    assert body["ok"] is True and body["team"]["id"] == "T2"
    with pytest.raises(ValueError, match="invalid_client_id"):
        fake.authorize("T2", client_id="999.999")
    with pytest.raises(KeyError, match="add_team first"):
        fake.authorize("T9")


async def test_every_method_answers_as_the_tokens_team(fake: FakeSlack) -> None:
    """chat.postMessage with each team's token: recorded with its team, stored per team and channel."""
    t2 = (await _install(fake, "T2"))["access_token"]
    for token, text in ((t2, "to T2"), (fake.bot_token, "to T1")):
        await _client(fake, token).chat_postMessage(channel="C1", text=text)
    posted = fake.calls_to("chat.postMessage")
    assert [(c.team_id, c.response["message"]["user"], c.response["message"]["team"]) for c in posted] == [
        ("T2", "UBT2", "T2"), ("T1", "UBOT", "T1")]
    assert [m["text"] for m in fake.posted_messages("C1", team_id="T2")] == ["to T2"]
    assert [m["text"] for m in fake.posted_messages("C1")] == ["to T2", "to T1"]
    assert [m["text"] for m in fake.team("T2").messages["C1"].values()] == ["to T2"]
    assert [m["text"] for m in fake.messages["C1"].values()] == ["to T1"]  # the fake's own team, as before
    ts = posted[0].response["ts"]
    await _client(fake, t2).chat_update(channel="C1", ts=ts, text="edited")  # T2's bot edits its own message
    assert await _error(_client(fake, fake.bot_token).chat_update(channel="C1", ts=ts, text="x")) == (
        "message_not_found")
    assert await _error(_client(fake, "xoxb-unknown").auth_test()) == "invalid_auth"
    assert await _error(_client(fake, t2).apps_connections_open(app_token=t2)) == "not_allowed_token_type"


async def test_token_rotation_refresh_and_expiry(fake: FakeSlack) -> None:
    """With rotation: refresh_token + expires_in; an expired token is token_expired; a refresh token works once."""
    data = await _install(fake, "T3")
    assert data["access_token"].startswith("xoxe.xoxb-1-") and data["refresh_token"].startswith("xoxe-1-")
    assert data["expires_in"] == 43200
    client = _client(fake)
    assert fake.expire_tokens("T3") == [data["access_token"]]
    assert await _error(_client(fake, data["access_token"]).auth_test()) == "token_expired"
    refreshed = (await client.oauth_v2_access(client_id=fake.client_id, client_secret=fake.client_secret,
                                              grant_type="refresh_token", refresh_token=data["refresh_token"])).data
    assert isinstance(refreshed, dict)
    assert refreshed["ok"] and refreshed["team"] == {"id": "T3", "name": "Rotating"}
    assert refreshed["expires_in"] == 43200
    assert refreshed["access_token"] != data["access_token"] and refreshed["refresh_token"] != data["refresh_token"]
    assert "authed_user" not in refreshed
    assert (await _client(fake, refreshed["access_token"]).auth_test())["team_id"] == "T3"
    assert await _error(client.oauth_v2_access(client_id=fake.client_id, client_secret=fake.client_secret,
                                               grant_type="refresh_token", refresh_token=data["refresh_token"])) == (
        "invalid_refresh_token")
    assert fake.live_tokens("T3") == [refreshed["access_token"]]
    assert fake.live_tokens("T3", kind="refresh") == [refreshed["refresh_token"]]


async def test_uninstall_and_revocation(fake: FakeSlack) -> None:
    """uninstall revokes every token of the team (token_revoked, invalid_refresh_token); others keep working."""
    t2 = (await _install(fake, "T2"))["access_token"]
    t3 = await _install(fake, "T3")
    assert fake.uninstall("T3")["type"] == "app_uninstalled"
    assert await _error(_client(fake, t3["access_token"]).auth_test()) == "token_revoked"
    assert await _error(_client(fake).oauth_v2_access(
        client_id=fake.client_id, client_secret=fake.client_secret, grant_type="refresh_token",
        refresh_token=t3["refresh_token"])) == "invalid_refresh_token"
    assert not fake.team("T3").installed
    revoked = fake.revoke_tokens("T2")
    assert (revoked["type"], revoked["tokens"]) == ("tokens_revoked", {"bot": ["UBT2"]})
    assert await _error(_client(fake, t2).auth_test()) == "token_revoked"
    assert (await _client(fake, fake.bot_token).auth_test())["team_id"] == "T1"
    await _install(fake, "T3")  # reinstalling after uninstall issues working tokens again
    assert fake.team("T3").installed and len(fake.live_tokens("T3")) == 1


async def test_enterprise_org_wide_install(fake: FakeSlack) -> None:
    """An org-wide install: team null, enterprise set; auth.test and event bodies carry the enterprise."""
    fake.add_team("T4", enterprise_id="E1", enterprise_name="Big Org", org_wide=True)
    data = await _install(fake, "T4")
    assert (data["team"], data["enterprise"], data["is_enterprise_install"]) == (
        None, {"id": "E1", "name": "Big Org"}, True)
    auth = await _client(fake, data["access_token"]).auth_test()
    assert (auth["enterprise_id"], auth["is_enterprise_install"]) == ("E1", True)
    body = fake.event_body(fake.app_mention_event("U1", "C1", "hi", team_id="T4"), team_id="T4")
    assert (body["team_id"], body["enterprise_id"], body["context_enterprise_id"]) == ("T4", "E1", "E1")
    assert body["authorizations"] == [{"enterprise_id": "E1", "team_id": None, "user_id": "UBT4", "is_bot": True,
                                       "is_enterprise_install": True}]
    assert body["event"]["text"] == "<@UBT4> hi"
    with pytest.raises(ValueError, match="enterprise_id"):
        fake.add_team("T5", org_wide=True)


def _oauth_app(fake: FakeSlack, tmp_path: Path, seen: list[dict[str, Any]]) -> AsyncApp:
    """A bolt app using its own OAuth flow (file stores) against the fake, answering mentions in the thread."""
    store = FileInstallationStore(base_dir=str(tmp_path / "installations"))
    settings = AsyncOAuthSettings(
        client_id=fake.client_id, client_secret=fake.client_secret, scopes=["chat:write", "app_mentions:read"],
        installation_store=store,
        state_store=FileOAuthStateStore(expiration_seconds=600, base_dir=str(tmp_path / "states")),
        install_page_rendering_enabled=False,
    )
    # installation_store given to the app as well: only then does bolt's token rotator use the app's client (and
    # so the fake); with oauth_settings alone it refreshes through a default client at https://slack.com/api/.
    app = AsyncApp(client=_client(fake), signing_secret=fake.signing_secret, oauth_settings=settings,
                   installation_store=store)

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any, context: Any) -> None:
        seen.append({"team_id": context.team_id, "bot_user_id": context.bot_user_id})
        await say(text=f"hi from {context.team_id}", thread_ts=event["ts"])

    @app.event("app_uninstalled")
    async def on_uninstalled(context: Any) -> None:
        seen.append({"uninstalled": context.team_id})

    return app


async def test_bolt_oauth_flow_installs_two_teams_and_answers_each_with_its_token(
    fake: FakeSlack, tmp_path: Path,
) -> None:
    """Add to Slack through bolt's own OAuth flow, then signed HTTP events of each team get that team's token;
    a rotating team whose token is about to expire is refreshed by bolt's token rotator."""
    fake.team("T3").expires_in = 60  # within bolt's 120-minute window: it refreshes before answering
    seen: list[dict[str, Any]] = []
    runner = web.AppRunner(_oauth_app(fake, tmp_path, seen).web_app(path="/slack/events"))
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            tokens = {}
            for team_id in ("T2", "T3"):
                async with session.get(base + "/slack/install", allow_redirects=False) as r:
                    assert r.status == 302, await r.text()
                    query = parse_qs(urlparse(r.headers["Location"]).query)
                    cookie = r.headers["Set-Cookie"].split(";")[0]  # Secure: a jar would not send it over http
                assert query["client_id"] == [fake.client_id] and query["scope"] == ["chat:write,app_mentions:read"]
                code = fake.authorize(team_id, scopes=query["scope"][0])
                redirect = f"{base}/slack/oauth_redirect?code={code}&state={query['state'][0]}"
                async with session.get(redirect, headers={"Cookie": cookie}) as r:
                    assert r.status == 200, await r.text()
                tokens[team_id] = fake.calls_to("oauth.v2.access")[-1].response["access_token"]
            for n, team_id in enumerate(("T2", "T3", "T1")):
                event = fake.app_mention_event("U1", "C1", "hello", team_id=team_id)
                raw = json.dumps(fake.event_body(event, team_id=team_id)).encode()
                headers = {**sign(fake.signing_secret, raw), "Content-Type": "application/json"}
                if team_id == "T1":  # the fake's own team never installed through OAuth: bolt finds nothing
                    async with session.post(base + "/slack/events", data=raw, headers=headers) as r:
                        assert "install" in (await r.text()).lower()  # bolt's "not installed" answer, no listener
                    continue
                async with session.post(base + "/slack/events", data=raw, headers=headers) as r:
                    assert r.status == 200
                [*_, call] = await fake.wait_for("chat.postMessage", count=n + 1)
                assert (call.team_id, call.args["text"]) == (team_id, f"hi from {team_id}")
        assert fake.calls_to("chat.postMessage")[0].token == tokens["T2"]
        refresh = [c for c in fake.calls_to("oauth.v2.access") if c.args.get("grant_type") == "refresh_token"]
        assert len(refresh) == 1 and refresh[0].ok and refresh[0].team_id == "T3"
        assert fake.calls_to("chat.postMessage")[1].token == refresh[0].response["access_token"] != tokens["T3"]
        assert [s["bot_user_id"] for s in seen] == ["UBT2", "UBT3"]
    finally:
        await runner.cleanup()


async def test_socket_mode_events_and_interactions_carry_their_team(fake: FakeSlack) -> None:
    """send_event / send_interactive with team_id: bolt sees that team and answers with its token."""
    t2 = (await _install(fake, "T2"))["access_token"]
    by_team = {"T1": fake.bot_token, "T2": t2}

    async def authorize(enterprise_id: str | None, team_id: str, **_: Any) -> AuthorizeResult:
        auth = await _client(fake, by_team[team_id]).auth_test()
        return AuthorizeResult.from_auth_test_response(auth_test_response=auth, bot_token=by_team[team_id])

    client = _client(fake)
    app = AsyncApp(client=client, signing_secret=fake.signing_secret, authorize=authorize)
    actions: list[str] = []

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text="hi", thread_ts=event["ts"])

    @app.action("connect")
    async def on_connect(ack: Any, body: dict[str, Any], context: Any) -> None:
        await ack()
        actions.append(f"{body['team']['id']}/{context.team_id}")

    handler = AsyncSocketModeHandler(app, fake.app_token, web_client=client, ping_interval=1)
    try:
        await handler.connect_async()
        await fake.wait_connected()
        envelope = await fake.send_event(fake.app_mention_event("U9", "C2", "hey", team_id="T2"), team_id="T2")
        assert fake.envelopes[envelope]["payload"]["authorizations"][0]["user_id"] == "UBT2"
        [call] = await fake.wait_for("chat.postMessage")
        assert (call.team_id, call.token) == ("T2", t2)
        assert list(fake.team("T2").messages["C2"]) == [fake.envelopes[envelope]["payload"]["event"]["ts"],
                                                         call.response["ts"]]
        payload = {"type": "block_actions", "user": {"id": "U9"}, "actions": [{"action_id": "connect"}]}
        await fake.wait_for_ack(await fake.send_interactive(payload, team_id="T2"))
        assert actions == ["T2/T2"]
        assert interactive_form(fake.interactive_payload(payload, team_id="T2"))["payload"].count('"T2"') >= 2
    finally:
        await handler.close_async()
