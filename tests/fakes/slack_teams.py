"""Many workspaces for FakeSlack: Slack's OAuth v2 install (``oauth.v2.access``), per-team bot tokens with optional
rotation, uninstall and revocation, so "Add to Slack" distribution is tested through the real slack_sdk offline.

FakeSlack inherits :class:`SlackTeams`. The fake's own team (``fake.team_id``, ``fake.bot_token``) is team number
one and behaves exactly as before; :meth:`SlackTeams.add_team` registers more. A Web API call is answered as the
team its token belongs to: while its handler runs, the fake's identity attributes (``team_id``, ``bot_user_id``,
``bot_id``, ``messages``, ``reactions``, ...) are that team's (see :meth:`SlackTeams._acting_as`; handlers never
await, so nothing else can observe the swap).
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_SCOPES", "IssuedToken", "Refusal", "SlackTeams", "Team", "event_callback_body"]

OAUTH_METHOD = "oauth.v2.access"
DEFAULT_SCOPES = ("app_mentions:read", "chat:write", "im:history", "reactions:write", "users:read")
CODE_LIFETIME = 600.0  # Slack's authorization codes are short-lived; ten minutes here
_SWAPPED = ("team_id", "team_name", "team_domain", "bot_user_id", "bot_id", "enterprise_id", "is_enterprise_install",
            "messages", "reactions")


class Refusal(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": ...}`` like Slack does."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class Team:
    """A workspace that can install the app (or, with ``org_wide``, an Enterprise Grid org-wide install)."""

    id: str
    name: str
    domain: str
    bot_user_id: str
    bot_id: str
    enterprise_id: str | None = None
    enterprise_name: str | None = None
    org_wide: bool = False
    rotation: bool = False
    expires_in: int = 43200
    installed: bool = False
    installer_id: str | None = None
    scope: str = ""
    messages: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # channel -> ts -> message
    reactions: dict[tuple[str, str], dict[str, list[str]]] = field(default_factory=dict)

    @property
    def is_enterprise_install(self) -> bool:
        """Slack's flag for an org-wide install."""
        return self.org_wide


@dataclass
class IssuedToken:
    """A token the fake handed out: a bot (access) token or a refresh token, and its state."""

    value: str
    team_id: str
    kind: str  # "bot" or "refresh"
    expires_at: float | None = None  # time.time() after which a bot token answers token_expired; None: never
    revoked: bool = False  # uninstall / tokens_revoked: token_revoked (bot), invalid_refresh_token (refresh)
    used: bool = False  # a refresh token already exchanged: invalid_refresh_token

    def expired(self) -> bool:
        """True once the token's lifetime is over."""
        return self.expires_at is not None and time.time() >= self.expires_at


@dataclass
class _Grant:
    """A code from the authorize step, waiting for oauth.v2.access."""

    code: str
    team_id: str
    user_id: str
    scope: str
    redirect_uri: str | None
    expires_at: float
    used: bool = False


def event_callback_body(
    event: dict[str, Any],
    *,
    team_id: str = "T1",
    event_id: str | None = None,
    api_app_id: str = "A1",
    bot_user_id: str = "UBOT",
    event_time: int | None = None,
    enterprise_id: str | None = None,
    is_enterprise_install: bool = False,
    is_ext_shared_channel: bool = False,
) -> dict[str, Any]:
    """Wrap an event in the ``event_callback`` body Slack delivers over HTTP and inside Socket Mode.

    With ``enterprise_id`` the body carries it (top level and in ``authorizations``); an org-wide install's
    authorization has ``team_id: null`` and ``is_enterprise_install: true``, as Slack sends it.
    """
    body: dict[str, Any] = {
        "token": "fake-verification-token",
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()) if event_time is None else event_time,
        "authorizations": [
            {
                "enterprise_id": enterprise_id,
                "team_id": None if is_enterprise_install else team_id,
                "user_id": bot_user_id,
                "is_bot": True,
                "is_enterprise_install": is_enterprise_install,
            }
        ],
        "is_ext_shared_channel": is_ext_shared_channel,
    }
    if enterprise_id is not None:
        body["enterprise_id"] = enterprise_id
    return body


class SlackTeams:
    """OAuth v2 and several teams, mixed into FakeSlack (which provides the attributes annotated here)."""

    team_id: str
    team_name: str
    team_domain: str
    bot_user_id: str
    bot_id: str
    bot_token: str
    app_token: str
    app_id: str
    bot_name: str
    messages: dict[str, dict[str, dict[str, Any]]]
    reactions: dict[tuple[str, str], dict[str, list[str]]]
    add_user: Callable[..., dict[str, Any]]

    def _init_teams(self, client_id: str, client_secret: str) -> None:
        """Register the fake's own team (sharing the fake's message stores) and its static bot token."""
        self.client_id = client_id
        self.client_secret = client_secret
        self.enterprise_id: str | None = None
        self.is_enterprise_install = False
        self._default_team_id = self.team_id
        self._acting: str | None = None
        default = Team(self.team_id, self.team_name, self.team_domain, self.bot_user_id, self.bot_id, installed=True)
        default.messages, default.reactions = self.messages, self.reactions
        self.teams: dict[str, Team] = {self.team_id: default}
        self.tokens: dict[str, IssuedToken] = {self.bot_token: IssuedToken(self.bot_token, self.team_id, "bot")}
        self._grants: dict[str, _Grant] = {}

    # ------------------------------------------------------------------ test-side API

    def add_team(
        self,
        team_id: str,
        *,
        name: str | None = None,
        domain: str | None = None,
        enterprise_id: str | None = None,
        enterprise_name: str | None = None,
        org_wide: bool = False,
        rotation: bool = False,
        expires_in: int = 43200,
    ) -> Team:
        """Register a workspace that can install the app; its bot user is ``UB<team_id>`` / ``BB<team_id>``."""
        if team_id in self.teams:
            raise ValueError(f"team {team_id} is already registered")
        if org_wide and enterprise_id is None:
            raise ValueError("an org-wide install needs an enterprise_id")
        team = Team(
            team_id, name or f"Team {team_id}", domain or f"team-{team_id.lower()}", f"UB{team_id}", f"BB{team_id}",
            enterprise_id, enterprise_name or (f"Org {enterprise_id}" if enterprise_id else None), org_wide,
            rotation, expires_in,
        )
        self.teams[team_id] = team
        self.add_user(team.bot_user_id, name=self.bot_name, is_bot=True, team_id=team_id)
        return team

    def team(self, team_id: str | None = None) -> Team:
        """A registered team (the fake's own with None); KeyError names the known ones."""
        key = team_id or self._default_team_id
        if key not in self.teams:
            raise KeyError(f"unknown team {key!r}; registered: {sorted(self.teams)} (add_team first)")
        return self.teams[key]

    def authorize(
        self,
        team_id: str,
        *,
        user_id: str = "UINSTALLER",
        client_id: str | None = None,
        scopes: str | Sequence[str] = DEFAULT_SCOPES,
        redirect_uri: str | None = None,
    ) -> str:
        """The user clicks "Allow" on slack.com/oauth/v2/authorize: returns the one-time ``code`` for the redirect."""
        if client_id is not None and client_id != self.client_id:
            raise ValueError("invalid_client_id: Slack shows an error page, no code is issued")
        self.team(team_id)
        scope = scopes if isinstance(scopes, str) else ",".join(scopes)
        code = f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{secrets.token_hex(16)}"
        self._grants[code] = _Grant(code, team_id, user_id, scope, redirect_uri, time.monotonic() + CODE_LIFETIME)
        return code

    def live_tokens(self, team_id: str | None = None, kind: str = "bot") -> list[str]:
        """Tokens of one team (the fake's own by default) that still work, oldest first."""
        key = self.team(team_id).id
        return [t.value for t in self.tokens.values()
                if t.team_id == key and t.kind == kind and not t.revoked and not t.used and not t.expired()]

    def expire_tokens(self, team_id: str) -> list[str]:
        """Make the team's live bot tokens expire now (a rotation test need not wait 12 hours); returns them."""
        expired = self.live_tokens(team_id)
        for value in expired:
            self.tokens[value].expires_at = time.time() - 1
        return expired

    def revoke_tokens(self, team_id: str) -> dict[str, Any]:
        """Revoke the team's bot (and refresh) tokens; returns the ``tokens_revoked`` event to send."""
        team = self.team(team_id)
        for token in self.tokens.values():
            if token.team_id == team.id:
                token.revoked = True
        return self.tokens_revoked_event(team.id)

    def uninstall(self, team_id: str) -> dict[str, Any]:
        """The workspace removes the app: every token of the team stops working; returns ``app_uninstalled``."""
        team = self.team(team_id)
        self.revoke_tokens(team.id)
        for grant in self._grants.values():
            if grant.team_id == team.id:
                grant.used = True
        team.installed = False
        return self.app_uninstalled_event()

    @staticmethod
    def app_uninstalled_event() -> dict[str, Any]:
        """The ``app_uninstalled`` event (its team is in the event_callback wrapper)."""
        return {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"}

    def tokens_revoked_event(self, team_id: str | None = None) -> dict[str, Any]:
        """The ``tokens_revoked`` event for the team's bot: ``{"tokens": {"bot": [bot_user_id]}}``."""
        return {"type": "tokens_revoked", "tokens": {"bot": [self.team(team_id).bot_user_id]},
                "event_ts": f"{time.time():.6f}"}

    def event_body(
        self,
        event: dict[str, Any],
        *,
        team_id: str | None = None,
        event_id: str | None = None,
        is_ext_shared_channel: bool = False,
    ) -> dict[str, Any]:
        """The event_callback body of ``event`` from one team, as HTTP mode receives it (Socket Mode wraps it too)."""
        team = self.team(team_id)
        return event_callback_body(
            event, team_id=team.id, event_id=event_id, api_app_id=self.app_id, bot_user_id=team.bot_user_id,
            enterprise_id=team.enterprise_id, is_enterprise_install=team.org_wide,
            is_ext_shared_channel=is_ext_shared_channel,
        )

    # ------------------------------------------------------------------ server side

    def _check_token(self, method: str, token: str) -> tuple[str | None, Team | None]:
        """Slack's token checks: (error or None, the team the token belongs to)."""
        if not token:
            return "not_authed", None
        if method == "apps.connections.open":
            if token == self.app_token:
                return None, None
            known = self.tokens.get(token)
            return ("not_allowed_token_type" if known is not None and known.kind == "bot" else "invalid_auth"), None
        if token == self.app_token:
            return "not_allowed_token_type", None
        issued = self.tokens.get(token)
        if issued is None or issued.kind != "bot":
            return "invalid_auth", None
        if issued.revoked:
            return "token_revoked", None
        if issued.expired():
            return "token_expired", None
        return None, self.teams[issued.team_id]

    def _oauth_v2_access(self, args: dict[str, Any], authorization: str) -> tuple[dict[str, Any], str]:
        """Exchange a code (or, with token rotation, a refresh token) for a bot token: (response, team id)."""
        client_id, client_secret = args.get("client_id"), args.get("client_secret")
        if authorization.startswith("Basic "):
            try:
                client_id, _, client_secret = base64.b64decode(authorization[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise Refusal("invalid_client_id") from None
        if not client_id or client_id != self.client_id:
            raise Refusal("invalid_client_id")
        if client_secret != self.client_secret:
            raise Refusal("bad_client_secret")
        if args.get("grant_type") == "refresh_token":
            return self._refresh(str(args.get("refresh_token") or ""))
        grant = self._grants.get(str(args.get("code") or ""))
        if grant is None or grant.used or time.monotonic() > grant.expires_at:
            raise Refusal("invalid_code")
        if grant.redirect_uri is not None and args.get("redirect_uri") != grant.redirect_uri:
            raise Refusal("bad_redirect_uri")
        grant.used = True
        team = self.teams[grant.team_id]
        team.installed, team.installer_id, team.scope = True, grant.user_id, grant.scope
        body = self._token_response(team)
        body["authed_user"] = {"id": grant.user_id}
        return body, team.id

    def _refresh(self, refresh_token: str) -> tuple[dict[str, Any], str]:
        """A refresh token buys a new access token and a new refresh token; the old refresh token is spent."""
        issued = self.tokens.get(refresh_token)
        if issued is None or issued.kind != "refresh" or issued.used or issued.revoked:
            raise Refusal("invalid_refresh_token")
        issued.used = True
        team = self.teams[issued.team_id]
        return self._token_response(team), team.id

    def _token_response(self, team: Team) -> dict[str, Any]:
        """oauth.v2.access's answer with a fresh bot token (and refresh token when the team rotates tokens)."""
        if team.rotation:
            access = f"xoxe.xoxb-1-{secrets.token_hex(20)}"
            self.tokens[access] = IssuedToken(access, team.id, "bot", time.time() + team.expires_in)
        else:
            access = f"xoxb-{team.id}-{secrets.token_hex(20)}"
            self.tokens[access] = IssuedToken(access, team.id, "bot")
        body: dict[str, Any] = {
            "app_id": self.app_id,
            "scope": team.scope,
            "token_type": "bot",
            "access_token": access,
            "bot_user_id": team.bot_user_id,
            "team": None if team.org_wide else {"id": team.id, "name": team.name},
            "enterprise": {"id": team.enterprise_id, "name": team.enterprise_name} if team.enterprise_id else None,
            "is_enterprise_install": team.org_wide,
        }
        if team.rotation:
            refresh = f"xoxe-1-{secrets.token_hex(30)}"
            self.tokens[refresh] = IssuedToken(refresh, team.id, "refresh")
            body.update(refresh_token=refresh, expires_in=team.expires_in)
        return body

    @contextmanager
    def _acting_as(self, team: Team | None) -> Iterator[None]:
        """Run a (synchronous) handler or builder as ``team``: the fake's identity and stores become the team's."""
        if team is None or team.id == self._default_team_id or self._acting == team.id:
            yield
            return
        if self._acting is not None:
            raise RuntimeError(f"already acting as team {self._acting}, asked for {team.id}")
        saved = {name: getattr(self, name) for name in _SWAPPED}
        values = {"team_id": team.id, "team_name": team.name, "team_domain": team.domain,
                  "bot_user_id": team.bot_user_id, "bot_id": team.bot_id, "enterprise_id": team.enterprise_id,
                  "is_enterprise_install": team.org_wide, "messages": team.messages, "reactions": team.reactions}
        for name in _SWAPPED:
            setattr(self, name, values[name])
        self._acting = team.id
        try:
            yield
        finally:
            for name, value in saved.items():
                setattr(self, name, value)
            self._acting = None
