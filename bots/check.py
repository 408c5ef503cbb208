"""`uppzy-bot check`: the staging smoke test from the Uppzy guide, one ✓/✗ line per check, exit 0 only if all pass."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

import httpx

from core.config import Settings
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
from core.uppzy import UppzyClient

__all__ = ["CheckResult", "run_check"]

SLACK_SCOPES = (
    "app_mentions:read", "channels:history", "chat:write", "chat:write.public", "commands", "groups:history",
    "im:history", "reactions:read", "reactions:write", "users:read", "users:read.email",
)
DISCORD_MESSAGE_CONTENT = (1 << 18) | (1 << 19)  # GATEWAY_MESSAGE_CONTENT or its _LIMITED variant


class CheckFailed(Exception):
    """A check found a problem; its text is the line shown to the operator."""


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    ms: float


def _uppzy_problem(exc: BaseException) -> str:
    if isinstance(exc, UppzyAuthError):
        return "the API key was refused (401): check UPPZY_API_KEY (expired, revoked, or for another tenant?)"
    if isinstance(exc, UppzyForbidden):
        return "access denied (403): the plan or key role does not allow the M2M API"
    if isinstance(exc, UppzyNotFound):
        return "not found (404): check UPPZY_SITE_ID / UPPZY_TENANT_ID"
    if isinstance(exc, UppzyRateLimited):
        return "rate limited (429): try again later"
    if isinstance(exc, UppzyTimeout):
        return "no answer in time: check the network path to UPPZY_BASE_URL"
    if isinstance(exc, UppzyUnavailable):
        return f"unreachable or failing ({exc.status or 'network'}): check UPPZY_BASE_URL and Uppzy's status"
    return f"unexpected error ({type(exc).__name__})"


async def _timed(name: str, work: Callable[[], Awaitable[str]], secrets: list[str]) -> CheckResult:
    started = time.monotonic()
    try:
        detail, ok = await work(), True
    except UppzyError as exc:
        detail, ok = _uppzy_problem(exc), False
    except CheckFailed as exc:
        detail, ok = str(exc), False
    except Exception as exc:  # a check must report, never crash the report
        detail, ok = f"{type(exc).__name__}: {redact(str(exc), secrets)[:200]}", False
    return CheckResult(name, ok, detail, round((time.monotonic() - started) * 1000, 1))


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


async def _slack(settings: Settings) -> str:
    token = settings.slack_bot_token.reveal() if settings.slack_bot_token else ""
    async with httpx.AsyncClient(base_url=settings.slack_api_base_url, timeout=10, trust_env=True) as http:
        res = await http.post("auth.test", headers={"Authorization": f"Bearer {token}"})
    body = res.json()
    if not body.get("ok"):
        return _fail(f"auth.test refused: {body.get('error', 'unknown error')} (check SLACK_BOT_TOKEN)")
    granted = {s.strip() for s in res.headers.get("x-oauth-scopes", "").split(",") if s.strip()}
    missing = [s for s in SLACK_SCOPES if granted and s not in granted]
    if missing:
        return _fail(f"token lacks scopes {', '.join(missing)}: add them (manifest.yml) and reinstall the app")
    mode = "Socket Mode" if settings.slack_app_token else "HTTP mode"
    return f"bot {body.get('user', '?')} in team {body.get('team', '?')}; {mode}"


async def _discord(settings: Settings) -> str:
    token = settings.discord_bot_token.reveal() if settings.discord_bot_token else ""
    headers = {"Authorization": f"Bot {token}"}
    async with httpx.AsyncClient(base_url=settings.discord_api_base_url + "/", timeout=10, trust_env=True) as http:
        me = await http.get("users/@me", headers=headers)
        if me.status_code == 401:
            return _fail("the token was refused (401): check DISCORD_BOT_TOKEN")
        me.raise_for_status()
        app = await http.get("oauth2/applications/@me", headers=headers)
        app.raise_for_status()
    flags = int(app.json().get("flags") or 0)
    if not flags & DISCORD_MESSAGE_CONTENT:
        return _fail("Message Content intent is off: Developer Portal → Bot → Privileged Gateway Intents")
    return f"logged in as {me.json().get('username', '?')}; Message Content intent enabled"


async def run_check(settings: Settings, *, no_chat: bool = False, as_json: bool = False,
                    print_fn: Callable[[str], None] = print) -> int:
    """Run every check that the configuration calls for; print the report; 0 only when all pass."""
    secrets = settings.secrets()
    results = [CheckResult("settings", True, "all values parse", 0.0)]
    missing = [v for v in ("UPPZY_API_KEY", "UPPZY_SITE_ID") if not getattr(settings, v.lower())]
    if missing:
        results.append(CheckResult("uppzy", False, f"{' and '.join(missing)} not set", 0.0))
    else:
        assert settings.uppzy_api_key is not None and settings.uppzy_site_id is not None
        from bots.runner import build_uppzy

        async with build_uppzy(settings) as uppzy:
            probe = "tenant limits" if settings.uppzy_tenant_id else "site read"

            async def reach() -> str:
                await uppzy.ping()
                return f"key accepted, {probe} OK at {settings.uppzy_base_url}"

            results.append(await _timed("uppzy key and reachability", reach, secrets))
            if not no_chat and results[-1].ok:
                results.append(await _timed("uppzy async chat round trip", lambda: _chat_round_trip(uppzy), secrets))
    if settings.slack_bot_token:
        results.append(await _timed("slack auth.test and scopes", lambda: _slack(settings), secrets))
    if settings.discord_bot_token:
        results.append(await _timed("discord login and intents", lambda: _discord(settings), secrets))
    if as_json:
        print_fn(json.dumps({"ok": all(r.ok for r in results), "checks": [asdict(r) for r in results]}))
    else:
        for r in results:
            print_fn(f"{'✓' if r.ok else '✗'} {r.name} ({r.ms:.0f} ms): {redact(r.detail, secrets)}")
    return 0 if all(r.ok for r in results) else 1
