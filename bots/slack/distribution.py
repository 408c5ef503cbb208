"""Slack "Add to Slack" distribution: slack-bolt's OAuth flow on our stores, its install and redirect pages, each bolt
request bound to its team's token, and uninstall (app_uninstalled, tokens_revoked) removing what the team left."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_callback_options import AsyncCallbackOptions, AsyncFailureArgs, AsyncSuccessArgs
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

from bots.slack.installations import STATE_SECONDS, StoreInstallations, StoreStates
from bots.slack.teams import TeamClients
from core.config import Settings

__all__ = ["INSTALL_PATH", "REDIRECT_PATH", "Distribution", "oauth_settings"]

log = logging.getLogger(__name__)
http_log = logging.getLogger("bots.web")  # per-request lines: rate-limited by the web server's log limits

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"


async def _installed(args: AsyncSuccessArgs) -> BoltResponse:
    """bolt's short success page, after one log line naming the team (never a token)."""
    installation = args.installation
    log.info("Slack app installed team=%s enterprise=%s org_wide=%s", installation.team_id,
             installation.enterprise_id, bool(installation.is_enterprise_install))
    return await args.default.success(args)


async def _refused(args: AsyncFailureArgs) -> BoltResponse:
    """bolt's failure page (4xx for a forged, expired or reused state, or a bad code), after one log line."""
    http_log.info("slack install refused (%s): %s", args.suggested_status_code, args.reason)
    return await args.default.failure(args)


def oauth_settings(settings: Settings, installations: StoreInstallations, states: StoreStates,
                   scopes: Iterable[str]) -> AsyncOAuthSettings:
    """bolt's OAuth settings for our stores: /slack/install, /slack/oauth_redirect, states good once for 10 minutes."""
    assert settings.slack_client_id and settings.slack_client_secret
    return AsyncOAuthSettings(
        client_id=settings.slack_client_id, client_secret=settings.slack_client_secret.reveal(), scopes=list(scopes),
        installation_store=installations, state_store=states, install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH, state_expiration_seconds=STATE_SECONDS,
        redirect_uri=settings.slack_redirect_uri, callback_options=AsyncCallbackOptions(success=_installed,
                                                                                        failure=_refused),
        logger=log,
    )


class Distribution:
    """The OAuth mode's parts of the Slack app: pages, per-request team binding, and uninstall."""

    def __init__(self, app: AsyncApp, installations: StoreInstallations, teams: TeamClients, *,
                 forget: Callable[[str, str], Awaitable[None]] | None = None) -> None:
        self.app = app
        self.installations = installations
        self.teams = teams
        self.forget = forget  # the composition root's "forget a workspace" (core.connect.Connector.forget)

    def register(self) -> None:
        """Bind each bolt request to its team; listen for uninstall and revoked bot tokens."""
        self.app.middleware(self._bind)
        self.app.event("app_uninstalled")(self._on_uninstalled)
        self.app.event("tokens_revoked")(self._on_tokens_revoked)

    def routes(self, ready: Callable[[], bool]) -> list[web.RouteDef]:
        """GET /slack/install (the "Add to Slack" page) and GET /slack/oauth_redirect (code → installation)."""

        async def install(request: web.Request) -> web.StreamResponse:
            return await self._page(request, ready, install=True)

        async def redirect(request: web.Request) -> web.StreamResponse:
            return await self._page(request, ready, install=False)

        return [web.get(INSTALL_PATH, install), web.get(REDIRECT_PATH, redirect)]

    async def _page(self, request: web.Request, ready: Callable[[], bool], *, install: bool) -> web.StreamResponse:
        if not ready():
            return web.Response(status=503, text="starting or stopping; try again in a moment")
        flow = self.app.oauth_flow
        assert flow is not None
        bolt_request = AsyncBoltRequest(body="", query=request.query_string,
                                        headers=dict(request.headers))  # type: ignore[arg-type]
        if install:
            response = await flow.handle_installation(bolt_request)
        else:
            response = await flow.handle_callback(bolt_request)
        return await to_aiohttp_response(response)

    async def _bind(self, context: Any, next_: Callable[[], Any]) -> None:
        """Every listener bolt runs for this request speaks with the team's own token."""
        team = await self.teams.lookup(context.team_id, context.enterprise_id) if context.team_id or \
            context.enterprise_id else None
        self.teams.bind(team or self.teams.anonymous(context.team_id))
        await next_()

    async def _on_uninstalled(self, context: Any) -> None:
        await self._forget(context, "app_uninstalled")

    async def _on_tokens_revoked(self, event: dict[str, Any], context: Any) -> None:
        if (event.get("tokens") or {}).get("bot"):
            await self._forget(context, "tokens_revoked")

    async def _forget(self, context: Any, why: str) -> None:
        """Remove the team's installation, then its workspace data (credentials, settings, channel modes)."""
        team_id, enterprise_id = context.team_id, context.enterprise_id
        org_wide = bool(context.is_enterprise_install)
        gone = await self.installations.delete(enterprise_id, team_id, org_wide=org_wide)
        workspace = team_id or enterprise_id
        if workspace:
            if self.forget is not None:
                await self.forget("slack", workspace)
            else:
                await self.installations.store.forget_workspace("slack", workspace)
        self.teams.forget(team_id, enterprise_id, org_wide=org_wide)
        log.info("Slack %s team=%s enterprise=%s: installation %s, workspace data removed", why, team_id,
                 enterprise_id, "removed" if gone else "already gone")
