"""'Add to Slack' distribution around the flow: start-up settings, `uppzy-bot check`, bounded metric labels, token
rotation serialised through the store's row lock."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.web.async_client import AsyncWebClient

from bots.check import run_check
from bots.runner import check_run_settings
from bots.slack.installations import StoreInstallations
from core.config import ConfigError, Settings, load_settings
from core.metrics import Metrics
from core.redaction import register_secret
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore
from tests.fakes.slack_fake import FakeSlack

KEY = Fernet.generate_key().decode()
OAUTH = {"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "client-secret-value", "SLACK_SIGNING_SECRET": "sig",
         "SECRETS_KEY": KEY}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("drop", "named"), [("SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET"),
                                             ("SECRETS_KEY", "SECRETS_KEY"),
                                             ("SLACK_CLIENT_SECRET", "SLACK_CLIENT_SECRET")])
def test_oauth_mode_stops_start_up_naming_what_is_missing(drop: str, named: str) -> None:
    settings = load_settings({k: v for k, v in OAUTH.items() if k != drop})
    with pytest.raises(ConfigError) as caught:
        check_run_settings(settings)
    assert caught.value.variable == named and "\n" not in str(caught.value)
    assert OAUTH["SLACK_CLIENT_SECRET"] not in str(caught.value) and KEY not in str(caught.value)


def test_oauth_mode_needs_no_deployment_uppzy_key_and_refuses_socket_mode() -> None:
    check_run_settings(load_settings(OAUTH))  # UPPZY_API_KEY / UPPZY_SITE_ID optional here
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        check_run_settings(load_settings({**OAUTH, "SLACK_APP_TOKEN": "xapp-1-x"}))
    with pytest.raises(ConfigError, match="UPPZY_API_KEY"):  # single workspace: still required
        check_run_settings(load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1-x"}))


def test_bot_token_and_client_settings_together_single_workspace_wins(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings({**OAUTH, "SLACK_BOT_TOKEN": "xoxb-1", "UPPZY_API_KEY": "k", "UPPZY_SITE_ID": "s"})
    assert not settings.slack_oauth
    with caplog.at_level(logging.WARNING):
        check_run_settings(settings)
    [line] = [r.getMessage() for r in caplog.records if "SLACK_CLIENT_ID" in r.getMessage()]
    assert "single-workspace" in line and "ignored" in line


async def test_check_in_oauth_mode(fake: FakeSlack, tmp_path: Path) -> None:
    """Client id/secret checked with Slack, SECRETS_KEY and the database; nothing secret printed; a wrong secret ✗."""
    env = {**OAUTH, "SLACK_CLIENT_ID": fake.client_id, "SLACK_CLIENT_SECRET": fake.client_secret,
           "SLACK_API_BASE_URL": fake.api_url, "DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"}
    lines: list[str] = []
    assert await run_check(load_settings(env), no_chat=True, print_fn=lines.append) == 0, lines
    assert any(line.startswith("✓ slack oauth") for line in lines)
    lines.clear()
    assert await run_check(load_settings({**env, "SLACK_CLIENT_SECRET": "wrong-secret"}), no_chat=True,
                           print_fn=lines.append) == 1
    assert any("bad_client_secret" in line for line in lines)
    text = "\n".join(lines)
    assert fake.client_secret not in text and "wrong-secret" not in text and KEY not in text


def test_workspace_metric_labels_stay_bounded() -> None:
    metrics = Metrics(workspace_labels=2)
    for n in range(50):
        metrics.questions.labels("slack", f"T{n}").inc()
    rendered = metrics.render().decode()
    shown = {line.split('workspace="')[1].split('"')[0] for line in rendered.splitlines()
             if line.startswith("uppzy_bot_questions_total{")}
    assert shown == {"T0", "T1", "other"}
    assert 'uppzy_bot_questions_total{platform="slack",workspace="other"} 48.0' in rendered
    assert Settings().metrics_workspace_labels == 100


async def test_token_rotation_refreshes_once_for_concurrent_lookups(fake: FakeSlack, tmp_path: Path) -> None:
    """A rotating token about to expire: two lookups at once (two apps on one database) refresh it once; both get
    the fresh token; the refresh went to SLACK_API_BASE_URL; the database holds no token in clear."""
    fake.add_team("T3", rotation=True, expires_in=60)  # within the 120-minute window: due at once
    code = fake.authorize("T3")
    client = AsyncWebClient(base_url=fake.api_url)
    data: dict[str, Any] = (await client.oauth_v2_access(client_id=fake.client_id, client_secret=fake.client_secret,
                                                         code=code)).data  # type: ignore[assignment]
    fake.team("T3").expires_in = 43200  # a refreshed token lives 12 hours: not due again
    box = SecretBox.from_setting(KEY)
    store = await SqliteStore.open(str(tmp_path / "r.db"))
    try:
        rotator = AsyncTokenRotator(client_id=fake.client_id, client_secret=fake.client_secret, client=client)
        apps = [StoreInstallations(store, box, rotator=rotator, on_secret=register_secret) for _ in range(2)]
        from slack_sdk.oauth.installation_store import Installation

        await apps[0].async_save(Installation(
            app_id="A1", team_id="T3", bot_token=data["access_token"], bot_refresh_token=data["refresh_token"],
            bot_token_expires_in=60, bot_user_id="UBT3", bot_id="BBT3", user_id="UINSTALLER",
            bot_scopes=data["scope"]))
        found = await asyncio.gather(*(a.async_find_installation(enterprise_id=None, team_id="T3") for a in apps))
        refreshes = [c for c in fake.calls_to("oauth.v2.access") if c.args.get("grant_type") == "refresh_token"]
        assert len(refreshes) == 1 and refreshes[0].ok
        fresh = refreshes[0].response["access_token"]
        assert [f.bot_token for f in found if f is not None] == [fresh, fresh]
        assert fake.live_tokens("T3") and fresh in fake.live_tokens("T3")
    finally:
        await store.close()
    raw = (tmp_path / "r.db").read_bytes()
    for token in (data["access_token"], data["refresh_token"], fresh):
        assert token.encode() not in raw
