"""`uppzy-bot check`: the staging smoke test from the Uppzy guide, one ✓/✗ line per check, exit 0 only if all pass."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import httpx

from bots.slack.scopes import SLACK_SCOPES
from core.config import ConfigError, Settings, shown_url
from core.errors import (
    UppzyAuthError,
    UppzyError,
    UppzyForbidden,
    UppzyNotFound,
    UppzyRateLimited,
    UppzyTimeout,
    UppzyUnavailable,
)
from core.redaction import redact
from core.retry import RetryPolicy
from core.uppzy import UppzyClient

__all__ = ["SLACK_SCOPES", "CheckResult", "run_check"]

DISCORD_MESSAGE_CONTENT = (1 << 18) | (1 << 19)  # GATEWAY_MESSAGE_CONTENT or its _LIMITED variant
CHECK_RETRY = RetryPolicy(attempts=2, budget=10.0)  # a smoke test reports an outage; it does not wait it out
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


class CheckFailed(Exception):
    """A check found a problem; its text is the line shown to the operator."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    ms: float


def _uppzy_problem(exc: BaseException, base_url: str) -> str:
    where = f"at {shown_url(base_url)} (UPPZY_BASE_URL)"
    if isinstance(exc, UppzyAuthError):
        return "the API key was refused (401): check UPPZY_API_KEY (expired, revoked, or for another tenant?)"
    if isinstance(exc, UppzyForbidden):
        return "access denied (403): the plan or key role does not allow the M2M API"
    if isinstance(exc, UppzyNotFound):
        return "not found (404): check UPPZY_SITE_ID / UPPZY_TENANT_ID"
    if isinstance(exc, UppzyRateLimited):
        return "rate limited (429): try again later"
    if isinstance(exc, UppzyTimeout):
        return f"no answer in time {where}: check the network path to it"
    if isinstance(exc, UppzyUnavailable):
        problem = f"failing (HTTP {exc.status})" if exc.status else "unreachable"
        return f"{problem} {where}: check the URL, the network path and Uppzy's status"
    return f"unexpected error ({type(exc).__name__})"


def mask(text: str, secrets: list[str]) -> str:
    """A line as it may be printed: secrets blanked and the user:password of any URL in it masked."""
    return _USERINFO.sub(r"\1***@", redact(text, secrets))


async def _timed(name: str, work: Callable[[], Awaitable[str]], settings: Settings) -> CheckResult:
    secrets = settings.secrets()
    started = time.monotonic()
    try:
        detail, ok = await work(), True
    except UppzyError as exc:
        detail, ok = _uppzy_problem(exc, settings.uppzy_base_url), False
    except CheckFailed as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a check must report, never crash the report
        detail, ok = f"{type(exc).__name__}: {redact(str(exc), secrets)[:200]}", False
    return CheckResult(name, ok, mask(detail, secrets), round((time.monotonic() - started) * 1000, 1))


async def _chat_round_trip(uppzy: UppzyClient, budget: float = 90.0) -> str:
    session_id = f"uppzy-bot-check-{uuid.uuid4().hex[:12]}"
    submitted = await uppzy.submit(session_id, "Smoke test from uppzy-bot check: please reply briefly.")
    deadline = time.monotonic() + budget
    try:
        while True:
            status = await uppzy.status(submitted.request_id)
            if status.done:
                break
            if time.monotonic() > deadline:
                return _fail(f"no answer within {budget:.0f}s (request_id {submitted.request_id})")
            await asyncio.sleep(1.0)
    finally:
        await uppzy.close_session(session_id)
    if status.status != "completed":
        return _fail(f"Uppzy could not answer (request_id {submitted.request_id})")
    return f"answered in session {session_id} (closed again), request_id {submitted.request_id}"


def _fail(detail: str) -> str:
    raise CheckFailed(detail)


async def _get_json(http: httpx.AsyncClient, method: str, path: str, variable: str, platform: str,
                    **kwargs: object) -> httpx.Response:
    """One call; an unreachable host, a 5xx or a body that is not JSON is a ✗ naming the URL and its setting."""
    where = f"{shown_url(str(http.base_url))} ({variable})"
    try:
        res = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
    except httpx.TimeoutException:
        return _fail(f"{platform} did not answer in time at {where}: check the network path to it")
    except httpx.TransportError as exc:
        return _fail(f"could not reach {platform} at {where}: {type(exc).__name__}")
    if res.status_code >= 500:
        return _fail(f"{platform} answered HTTP {res.status_code} at {where}: an outage? `run` would keep retrying")
    try:
        res.json()
    except ValueError:
        return _fail(f"{platform} answered HTTP {res.status_code} without JSON at {where}: is this the API's URL?")
    return res


async def _slack(settings: Settings) -> str:
    token = settings.slack_bot_token.reveal() if settings.slack_bot_token else ""
    async with httpx.AsyncClient(base_url=settings.slack_api_base_url, timeout=10, trust_env=True) as http:
        res = await _get_json(http, "POST", "auth.test", "SLACK_API_BASE_URL", "Slack",
                              headers={"Authorization": f"Bearer {token}"})
    body = res.json()
    if not body.get("ok"):
        return _fail(f"auth.test refused: {body.get('error', 'unknown error')} (check SLACK_BOT_TOKEN)")
    granted = {s.strip() for s in res.headers.get("x-oauth-scopes", "").split(",") if s.strip()}
    missing = [s for s in SLACK_SCOPES if granted and s not in granted]
    if missing:
        return _fail(f"token lacks scopes {', '.join(missing)}: add them (manifest.yml) and reinstall the app")
    if not settings.slack_app_token and not settings.slack_signing_secret:
        return _fail("SLACK_SIGNING_SECRET not set: HTTP mode (no SLACK_APP_TOKEN) needs it; `run` would refuse to "
                     "start")
    mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
    return f"bot {body.get('user', '?')} in team {body.get('team', '?')}; {mode}"


async def _slack_oauth(settings: Settings) -> str:
    """"Add to Slack" mode: the settings it needs, the client id and secret (Slack answers a made-up code with
    invalid_code only when both are right), SECRETS_KEY sealing and opening, and the database; none printed."""
    try:
        settings.check_slack_oauth()
    except ConfigError as exc:
        return _fail(str(exc))
    assert settings.slack_client_secret is not None and settings.secrets_key is not None
    form = {"client_id": settings.slack_client_id or "", "client_secret": settings.slack_client_secret.reveal(),
            "code": "uppzy-bot-check"}
    async with httpx.AsyncClient(base_url=settings.slack_api_base_url, timeout=10, trust_env=True) as http:
        res = await _get_json(http, "POST", "oauth.v2.access", "SLACK_API_BASE_URL", "Slack", data=form)
    error = res.json().get("error")
    if error in ("invalid_client_id", "bad_client_secret"):
        return _fail(f"Slack refused the app credentials ({error}): check SLACK_CLIENT_ID and SLACK_CLIENT_SECRET "
                     "(Basic Information → App Credentials)")
    from bots.runner import open_store
    from core.secrets_box import SecretBox

    try:
        box = SecretBox.from_setting(settings.secrets_key.reveal())
    except ConfigError as exc:
        return _fail(str(exc))
    if box.open(box.seal("uppzy-bot check")) != "uppzy-bot check":
        return _fail("SECRETS_KEY does not open what it seals")
    try:
        store = await open_store(settings, wait=5.0)
    except ConfigError as exc:
        return _fail(str(exc))
    try:
        await store.find_installation(None, "uppzy-bot-check")
    finally:
        await store.close()
    return "client id and secret accepted by Slack; SECRETS_KEY and the database OK; install page at /slack/install"


async def _discord(settings: Settings) -> str:
    token = settings.discord_bot_token.reveal() if settings.discord_bot_token else ""
    headers = {"Authorization": f"Bot {token}"}
    async with httpx.AsyncClient(base_url=settings.discord_api_base_url + "/", timeout=10, trust_env=True) as http:
        me = await _get_json(http, "GET", "users/@me", "DISCORD_API_BASE_URL", "Discord", headers=headers)
        if me.status_code == 401:
            return _fail("the token was refused (401): check DISCORD_BOT_TOKEN")
        app = await _get_json(http, "GET", "oauth2/applications/@me", "DISCORD_API_BASE_URL", "Discord",
                              headers=headers)
        if me.status_code >= 400 or app.status_code >= 400:
            status = me.status_code if me.status_code >= 400 else app.status_code
            return _fail(f"Discord answered HTTP {status} at {shown_url(settings.discord_api_base_url)} "
                         "(DISCORD_API_BASE_URL)")
    flags = int(app.json().get("flags") or 0)
    if not flags & DISCORD_MESSAGE_CONTENT:
        return _fail("Message Content intent is off: Developer Portal → Bot → Privileged Gateway Intents")
    return f"logged in as {me.json().get('username', '?')}; Message Content intent enabled"


async def run_check(settings: Settings, *, no_chat: bool = False, as_json: bool = False,
                    print_fn: Callable[[str], None] = print, workspaces: bool = False) -> int:
    """Run every check that the configuration calls for; print the report; 0 only when all pass."""
    secrets = settings.secrets()
    results = [CheckResult("settings", True, "all values parse", 0.0)]
    if not settings.slack_bot_token and not settings.slack_oauth and not settings.discord_bot_token:
        results.append(CheckResult("platforms", False, "neither SLACK_BOT_TOKEN nor DISCORD_BOT_TOKEN is set: "
                                   "`uppzy-bot run` would refuse to start; set one or both", 0.0))
    missing = [v for v in ("UPPZY_API_KEY", "UPPZY_SITE_ID") if not getattr(settings, v.lower())]
    if missing and settings.slack_oauth and len(missing) == 2:
        results.append(CheckResult("uppzy", True, "no deployment-wide key: each workspace connects its own", 0.0))
    elif missing:
        results.append(CheckResult("uppzy", False, f"{' and '.join(missing)} not set", 0.0))
    else:
        assert settings.uppzy_api_key is not None and settings.uppzy_site_id is not None
        from bots.runner import build_uppzy

        async with build_uppzy(settings, retry=CHECK_RETRY) as uppzy:
            probe = "tenant limits" if settings.uppzy_tenant_id else "site read"

            async def reach() -> str:
                await uppzy.ping()
                return f"key accepted, {probe} OK at {shown_url(settings.uppzy_base_url)}"

            results.append(await _timed("uppzy key and reachability", reach, settings))
            if not no_chat and results[-1].ok:
                results.append(await _timed("uppzy async chat round trip", lambda: _chat_round_trip(uppzy), settings))
    if settings.slack_bot_token:
        results.append(await _timed("slack auth.test and scopes", lambda: _slack(settings), settings))
    elif settings.slack_oauth or settings.slack_client_id or settings.slack_client_secret:
        results.append(await _timed("slack oauth, SECRETS_KEY and database", lambda: _slack_oauth(settings), settings))
    if settings.discord_bot_token:
        results.append(await _timed("discord login and intents", lambda: _discord(settings), settings))
    if workspaces:  # every workspace's own Uppzy key (bots/check_workspaces.py)
        from bots.check_workspaces import workspace_results

        results += await workspace_results(settings)
    if as_json:
        print_fn(json.dumps({"ok": all(r.ok for r in results), "checks": [asdict(r) for r in results]}))
    else:
        for r in results:
            print_fn(f"{'✓' if r.ok else '✗'} {r.name} ({r.ms:.0f} ms): {mask(r.detail, secrets)}")
    return 0 if all(r.ok for r in results) else 1
