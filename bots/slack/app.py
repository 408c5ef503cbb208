"""The Slack app: slack-bolt's AsyncApp over Socket Mode or signed HTTP, wired to the relay through SlackAdapter."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.middleware.authorization.async_single_team_authorization import AsyncSingleTeamAuthorization
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.oauth.token_rotation.async_rotator import AsyncTokenRotator
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.admin import SlackAdmin
from bots.slack.assistant import SlackAssistant
from bots.slack.distribution import INSTALL_PATH, Distribution, oauth_settings
from bots.slack.events import SlackEvents
from bots.slack.installations import StoreInstallations, StoreStates
from bots.slack.outbound import SlackAdapter
from bots.slack.private import SlackPrivate
from bots.slack.scopes import SLACK_SCOPES
from bots.slack.socket_handler import QuestionsFirstHandler
from bots.slack.teams import TeamClient, TeamClients
from bots.slack.users import SlackUsers
from core.config import ConfigError, Settings, shown_url
from core.ports import Inbound

__all__ = ["EVENTS_PATH", "SlackBot", "SlackUnavailable"]

log = logging.getLogger(__name__)
http_log = logging.getLogger("bots.web")  # per-request lines: rate-limited by the web server's log limits

EVENTS_PATH = "/slack/events"
_AUTH_ERRORS = {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                "not_allowed_token_type"}


class SlackUnavailable(ConnectionError):
    """Slack could not be reached or failed (5xx, rate limit) at start: worth retrying, not the operator's fault."""


_APP_TOKEN_HELP = ("create one with the connections:write scope under Basic Information → App-Level Tokens")
_BOT_TOKEN_HELP = "copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page"


def _refusal(exc: SlackApiError, variable: str, method: str) -> Exception:
    """What a failed start-up call means: the token refused or lacking a scope (ConfigError), or an outage."""
    error = exc.response.get("error")
    status = getattr(exc.response, "status_code", None)
    if error in _AUTH_ERRORS:
        help_text = _APP_TOKEN_HELP if variable == "SLACK_APP_TOKEN" else _BOT_TOKEN_HELP
        which = "app-level token" if variable == "SLACK_APP_TOKEN" else "bot token"
        return ConfigError(variable, f"Slack refused the {which} ({error}); {help_text}")
    if error == "missing_scope":
        needed = exc.response.get("needed") or "?"
        return ConfigError(variable, f"the token lacks the scope {needed}: add it (manifest.yml) and reinstall the app")
    return SlackUnavailable(f"Slack's {method} failed: HTTP {status} ({error or 'no error code'})")


class _BytesVerifier(SignatureVerifier):
    """slack_sdk's verifier, signing the raw bytes as received (it would decode them first, failing on bad UTF-8)."""

    def generate_signature(self, *, timestamp: str, body: str | bytes) -> str | None:
        if not isinstance(body, bytes):
            return super().generate_signature(timestamp=timestamp, body=body)
        base = b"v0:" + timestamp.encode("ascii") + b":" + body
        return "v0=" + hmac.new(self.signing_secret.encode(), base, hashlib.sha256).hexdigest()


class SlackBot:
    """Composition root of the Slack side: client, bolt app, adapter, admin surfaces, and the connection."""

    name = "slack"

    def __init__(self, settings: Settings, relay: Inbound, *, ping_interval: float = 10.0,
                 cosmetic_timeout: float = 3.0, connect_timeout: float = 30.0,
                 installations: StoreInstallations | None = None,
                 forget: Callable[[str, str], Awaitable[None]] | None = None) -> None:
        """Single workspace with SLACK_BOT_TOKEN; with the OAuth settings instead ("Add to Slack"), every installed
        team's token comes from `installations` (the composition root builds it on the store and SECRETS_KEY) and
        an uninstalled workspace is forgotten with `forget(platform, workspace)`."""
        self.oauth = settings.slack_oauth
        if not settings.slack_bot_token and not self.oauth:
            raise ConfigError("SLACK_BOT_TOKEN", "is required to run the Slack app")
        if self.oauth and installations is None:
            raise ConfigError("SECRETS_KEY", "is required for \"Add to Slack\" distribution (installations are "
                                             "stored encrypted)")
        self.settings = settings
        self.relay = relay
        self.mode = "socket" if settings.slack_app_token else "http"
        self._ping_interval = ping_interval
        self._session: aiohttp.ClientSession | None = None
        token = settings.slack_bot_token.reveal() if settings.slack_bot_token else None
        self.client = self._make_client(token, False)
        # Progress reactions and statuses are worth nothing late: this twin never waits out a 429.
        self._cosmetic_client = self._make_client(token, True)
        # Without a configured secret every HTTP request must fail verification, so use an unguessable one
        # (and never let bolt fall back to reading SLACK_SIGNING_SECRET from the environment).
        secret = settings.slack_signing_secret.reveal() if settings.slack_signing_secret else secrets.token_hex(32)
        self._verifier = _BytesVerifier(secret)
        default = TeamClient(None, self.client, self._cosmetic_client)
        # Middleware we never use is left out: every event pays for each one before it is acked.
        # Process before responding: an event is acked once its question is in the store (see SlackEvents).
        common: dict[str, Any] = {"client": self.client, "signing_secret": secret, "process_before_response": True,
                                  "name": "uppzy-slack", "ssl_check_enabled": self.mode == "http",
                                  "attaching_function_token_enabled": False,
                                  "attaching_conversation_kwargs_enabled": False}
        self.distribution: Distribution | None = None
        if installations is not None and self.oauth:
            assert settings.slack_client_id and settings.slack_client_secret
            # Refreshes go through this client: SLACK_API_BASE_URL and the shared session, never a default one.
            installations.rotator = AsyncTokenRotator(client_id=settings.slack_client_id,
                                                      client_secret=settings.slack_client_secret.reveal(),
                                                      client=self.client)
            self.teams = TeamClients(default, make=self._make_client, find=lambda enterprise, team: (
                installations.async_find_installation(enterprise_id=enterprise, team_id=team)))
            # The store is given to the app too: only then does bolt's own token refresh use our client.
            self.app = AsyncApp(**common, installation_store=installations, oauth_settings=oauth_settings(
                settings, installations, StoreStates(installations.store), SLACK_SCOPES))
            self.distribution = Distribution(self.app, installations, self.teams, forget=forget)
            self.distribution.register()
        else:
            self.teams = TeamClients(default)
            self.app = AsyncApp(**common)
        # Email lookups run before a question is acked: they use the twin that never waits out a 429.
        self.users = SlackUsers(self.client, admin_ids=settings.slack_admin_user_ids,
                                quick_client=self._cosmetic_client, teams=self.teams)
        self.adapter = SlackAdapter(self.client, cosmetic_client=self._cosmetic_client,
                                    cosmetic_timeout=cosmetic_timeout, users=self.users, teams=self.teams)
        self.admin = SlackAdmin(relay=relay, adapter=self.adapter, users=self.users)
        self._socket: QuestionsFirstHandler | None = None
        self._connecting: asyncio.Future[None] | None = None
        self._connect_timeout = connect_timeout
        self._http_runner: web.AppRunner | None = None
        self._started = False
        self.events = SlackEvents(relay, self.adapter)
        self.events.register(self.app)
        self.assistant = SlackAssistant(relay, self.adapter)  # the Messages tab as an agent: before admin's Home tab
        self.assistant.register(self.app, self.events.detached, self.events)
        self.admin.register(self.app, self.events.detached)
        self.admin.private = SlackPrivate(relay, self.adapter)  # /uppzy ask and "Share with the channel"
        self.admin.private.register(self.app, self.events.detached)
        # Registered now, before relay.start(), so answers recovered after a restart can be delivered.
        relay.register(self.adapter)

    def _make_client(self, token: str | None, cosmetic: bool) -> AsyncWebClient:
        """A Web API client for one token on the shared session (cosmetic: never waits out a 429)."""
        handlers = [AsyncConnectionErrorRetryHandler()] if cosmetic else \
            [AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
        return AsyncWebClient(base_url=self.settings.slack_api_base_url, token=token, retry_handlers=handlers,
                              session=self._session)

    # ---- lifecycle ------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the tokens (one clear ConfigError line if Slack refuses them), then connect Socket Mode."""
        if self.mode == "http" and not self.settings.slack_signing_secret:
            raise ConfigError("SLACK_SIGNING_SECRET", "is required for HTTP mode (or set SLACK_APP_TOKEN to use "
                                                      "Socket Mode); copy it from the app's Basic Information page")
        self._session = aiohttp.ClientSession()
        # One connection pool for every Web API call, bolt's per-request clients included.
        self.client.session = self._cosmetic_client.session = self._session
        if self.oauth:  # no token of our own: each installed team's comes from the store when its events arrive
            self.teams.clear()
            self._started = True
            log.info("Slack ready mode=oauth (HTTP, many workspaces): install page at %s", INSTALL_PATH)
            return
        identity = await self._call(self.client.auth_test(), "SLACK_BOT_TOKEN", "auth.test",
                                    "could not reach Slack's Web API at")
        self.adapter.bot_user_id = identity.get("user_id")
        self.adapter.bot_id = identity.get("bot_id")
        self._share_identity(identity)
        if self.mode == "socket":
            await self._connect_socket()
        self._started = True
        log.info("Slack ready mode=%s team=%s bot_user=%s", self.mode, identity.get("team_id"),
                 self.adapter.bot_user_id)

    async def _call(self, call: Awaitable[Any], variable: str, method: str, unreachable: str) -> Any:
        """A start-up Web API call: a refusal is a ConfigError naming `variable`, a network failure SlackUnavailable
        (retried); either way the session opened for it is closed again."""
        try:
            return await call
        except SlackApiError as exc:
            await self._close_session()
            raise _refusal(exc, variable, method) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            await self._close_session()
            raise SlackUnavailable(f"{unreachable} {shown_url(self.settings.slack_api_base_url)} (SLACK_API_BASE_URL):"
                                   f" {type(exc).__name__}") from None

    def _share_identity(self, identity: Any) -> None:
        """Hand our auth.test result to bolt's single-team authorization, which otherwise asks lazily.

        Lazily means once per event until its first auth.test returns: a burst of events queued while we were
        away would fire hundreds of rate-limited auth.test calls at start-up. If a future bolt changes this
        internal, it simply falls back to its lazy call.
        """
        for middleware in getattr(self.app, "_async_middleware_list", []):
            if isinstance(middleware, AsyncSingleTeamAuthorization) and middleware.auth_test_result is None:
                middleware.auth_test_result = identity

    async def _connect_socket(self) -> None:
        assert self.settings.slack_app_token is not None
        app_token = self.settings.slack_app_token.reveal()
        # Asked here (not by the handler) because the handler retries a refused token forever.
        opened = await self._call(self.client.apps_connections_open(app_token=app_token), "SLACK_APP_TOKEN",
                                  "apps.connections.open", "could not open Socket Mode at")
        # The aiohttp Socket Mode client builds its session at construction, so it must be made in the loop.
        self._socket = QuestionsFirstHandler(self.app, app_token, events=self.events, web_client=self.client,
                                             ping_interval=self._ping_interval)
        self._socket.client.wss_uri = opened["url"]
        # The SDK retries a failing websocket forever; wait a while, then let it keep trying in the background
        # so start() (and with it the runner's shutdown handling) never hangs on a network outage.
        self._connecting = asyncio.ensure_future(self._socket.connect_async())
        try:
            await asyncio.wait_for(asyncio.shield(self._connecting), self._connect_timeout)
        except TimeoutError:
            log.warning("Slack Socket Mode not connected after %.0fs; still trying", self._connect_timeout)

    async def stop(self, drain: float = 5.0) -> None:
        """Stop taking events, let acked ones reach the store (Slack will not resend them), close connections."""
        self._started = False
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        await self.events.drain(drain)
        await self.assistant.stop()
        await self._close_session()

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self.client.session = self._cosmetic_client.session = None
            self.teams.clear()

    @property
    def connected(self) -> bool:
        """True while events can arrive: an open socket (Socket Mode) or a started app (HTTP mode)."""
        if not self._started:
            return False
        if self._socket is None:
            return self.mode == "http"
        client = self._socket.client
        return not client.closed and client.current_session is not None and not client.current_session.closed

    # ---- HTTP mode ----------------------------------------------------------------------------------

    def http_routes(self) -> list[web.RouteDef]:
        """POST /slack/events for events, interactivity and slash commands, to mount on the runner's web app; with
        "Add to Slack" distribution also GET /slack/install and GET /slack/oauth_redirect."""
        routes = [web.post(EVENTS_PATH, self._handle_http)]
        if self.distribution is not None:
            routes += self.distribution.routes(lambda: self._started)
        return routes

    async def _handle_http(self, request: web.Request) -> web.Response:
        """Verify Slack's signature over the raw bytes before anything parses them; then let bolt dispatch."""
        if not self._started:
            return web.Response(status=503, text="starting or stopping")  # Slack retries, maybe on another replica
        async with asyncio.timeout(10):  # the runner's web server already bounds this; serve_http() does not
            raw = await request.read()
        if not self._signed(raw, request.headers):
            http_log.info("slack http: refused a request without a valid signature (401) from %s", request.remote)
            return web.Response(status=401, text="invalid or missing Slack signature")
        try:
            text = raw.decode("utf-8")  # whatever charset the header claims: Slack always sends UTF-8
        except UnicodeDecodeError:
            log.warning("Slack HTTP request dropped: its body is not valid UTF-8")  # signed: not a flood
            return web.Response(status=400, text="request body is not valid UTF-8")
        if request.content_type == "application/json":
            question = self._question(text)
            if question is not None:  # recorded before bolt parses anything, as in Socket Mode
                try:
                    await self.events.receive(question)
                except Exception:
                    log.exception("Slack event not acked (500): recording it failed")
                    return web.Response(status=500, text="not recorded; Slack will send it again")
                return web.Response(status=200)
        try:
            bolt_request = AsyncBoltRequest(body=text, query=request.query_string,
                                            headers=request.headers)  # type: ignore[arg-type]
        except ValueError as exc:  # signed, yet not what Slack sends
            log.warning("Slack HTTP request dropped: signed, but its body is not understood (%s)", type(exc).__name__)
            return web.Response(status=400, text="request body not understood")
        response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(response)

    @staticmethod
    def _question(text: str) -> dict[str, Any] | None:
        """The body when it is an Events API message or mention (SlackEvents takes those first), else None."""
        try:
            body = json.loads(text)
        except ValueError:
            return None  # bolt answers it
        return body if isinstance(body, dict) and SlackEvents.is_question(body) else None

    def _signed(self, raw: bytes, headers: Any) -> bool:
        """True when X-Slack-Signature is right for this body and a timestamp within 5 minutes."""
        try:
            return self._verifier.is_valid(body=raw, timestamp=headers.get("X-Slack-Request-Timestamp"),
                                           signature=headers.get("X-Slack-Signature"))
        except (ValueError, TypeError, OverflowError):  # a timestamp like 'abc', a non-ASCII signature
            return False

    async def serve_http(self, host: str = "0.0.0.0", port: int | None = None) -> int:
        """Serve /slack/events on its own web server (when the runner has none); returns the bound port."""
        app = web.Application()
        app.add_routes(self.http_routes())
        self._http_runner = web.AppRunner(app, access_log=None)
        await self._http_runner.setup()
        site = web.TCPSite(self._http_runner, host, self.settings.port if port is None else port)
        await site.start()
        bound = self._http_runner.addresses[0][1]
        log.info("Slack HTTP mode listening on %s:%d%s", host, bound, EVENTS_PATH)
        return int(bound)

    # ---- conversations ----------------------------------------------------------------------------
