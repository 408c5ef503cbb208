"""Loopback fake of Slack's Web API and Socket Mode, so the real slack-bolt stack can be tested offline.

The fake speaks the wire protocols described in ``offline-platform-testing.md`` (Part 1): point
``AsyncWebClient(base_url=fake.api_url)`` at it and ``AsyncSocketModeHandler`` finds the websocket
through ``apps.connections.open``. Every request is recorded; tests push events in and assert on calls.
All times (``ApiCall.at``, ``acks[...]["at"]``, ``event_sent_at``) come from ``time.monotonic()``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import WSCloseCode, WSMsgType, web

from tests.fakes.slack_assistant import SlackAssistantFake
from tests.fakes.slack_blocks import SlackBlocks
from tests.fakes.slack_sockets import MAX_RETRIES, TOO_MANY_WEBSOCKETS, Delivery, SocketConn, SocketHub
from tests.fakes.slack_teams import OAUTH_METHOD, IssuedToken, SlackTeams, Team, event_callback_body
from tests.fakes.slack_teams import Refusal as _Refusal

__all__ = [
    "ApiCall",
    "Delivery",
    "FakeSlack",
    "IssuedToken",
    "Team",
    "event_callback_body",
    "interactive_form",
    "sign",
    "slash_command_form",
]

# Slack accepts these as JSON-encoded strings in form bodies; decoding them lets tests compare dicts.
_JSON_ARG_KEYS = frozenset({"blocks", "attachments", "view", "metadata"})
_TS_EPOCH = 1_700_000_000
_BLOCKS_TEXT_LIMIT = 12_000  # Slack refuses a message whose blocks hold more text than this (msg_blocks_too_long)
_SECTION_TEXT_LIMIT = 3000  # ... and a section whose text is longer (invalid_blocks)
_POLL_SECONDS = 0.02  # wait helpers poll too, because test-side state changes never notify the fake

ResponseOverride = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]


@dataclass
class ApiCall:
    """One Web API request as the fake received it, so tests assert on what the bot really sent."""

    method: str
    args: dict[str, Any]
    token: str
    headers: dict[str, str]
    at: float
    http_verb: str = "POST"
    status: int = 200
    ok: bool = True
    error: str | None = None
    scripted: bool = False  # True when fail_next() produced the answer
    response: dict[str, Any] = field(default_factory=dict)
    team_id: str | None = None  # the team the token belongs to (oauth.v2.access: the team installed); None: app-level


@dataclass
class _Failure:
    """A queued scripted answer, so retry and error paths can be exercised deterministically."""

    error: str
    status: int
    retry_after: int | None


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Return Slack's request-signing headers, so HTTP-mode tests pass bolt's signature check."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def slash_command_form(
    command: str = "/uppzy",
    text: str = "",
    *,
    user_id: str,
    channel_id: str,
    team_id: str = "T1",
    api_app_id: str = "A1",
    response_url: str = "https://hooks.slack.com/commands/T1/1/fake",
    trigger_id: str | None = None,
    user_name: str | None = None,
    channel_name: str | None = None,
    team_domain: str = "fake-team",
) -> dict[str, str]:
    """Build a slash-command payload (all strings, as Slack form-encodes it) for HTTP or Socket Mode."""
    return {
        "token": "fake-verification-token",
        "team_id": team_id,
        "team_domain": team_domain,
        "channel_id": channel_id,
        "channel_name": channel_name
        or ("directmessage" if channel_id.startswith("D") else channel_id.lower()),
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": api_app_id,
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:16]}",
    }


def interactive_form(payload: dict[str, Any]) -> dict[str, str]:
    """Form-encode an interactive payload the way Slack POSTs it in HTTP mode."""
    return {"payload": json.dumps(payload)}


class FakeSlack(SlackTeams, SlackAssistantFake, SlackBlocks):
    """An aiohttp server on 127.0.0.1 that answers like Slack, so bolt runs unchanged in tests.

    Many workspaces (see ``slack_teams``): ``add_team``, ``authorize`` + ``oauth.v2.access`` install a team and
    issue its own bot token; every Web API call is answered as the team its token belongs to.

    Socket Mode: up to 10 clients (replicas) may hold a websocket at once; each envelope goes to one of them,
    the newest (``distribution="newest"``, the default) or a random one (``"random"``, seedable with ``seed``).
    With ``redeliver_after`` seconds set, an events_api envelope not acked in time, or whose socket closes first,
    is sent again (new envelope_id, same event_id, ``retry_attempt`` + 1) to another open socket, up to
    ``max_retries`` times. ``deliveries`` records every envelope sent: socket (connection number), time, attempt.
    """

    def __init__(
        self,
        *,
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        team_id: str = "T1",
        app_id: str = "A1",
        bot_token: str = "xoxb-test-fake",
        app_token: str = "xapp-1-test-fake",
        signing_secret: str = "test-signing-secret",
        bot_name: str = "uppzy",
        team_name: str = "Fake Team",
        team_domain: str = "fake-team",
        distribution: str = "newest",
        seed: int | None = None,
        redeliver_after: float | None = None,
        max_retries: int = MAX_RETRIES,
        client_id: str = "1111111111.2222222222",
        client_secret: str = "fake-client-secret",
    ) -> None:
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.team_id = team_id
        self.app_id = app_id
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.bot_name = bot_name
        self.team_name = team_name
        self.team_domain = team_domain

        self.calls: list[ApiCall] = []
        self.users: dict[str, dict[str, Any]] = {}
        self.channels: dict[str, dict[str, Any]] = {}
        self.messages: dict[str, dict[str, dict[str, Any]]] = {}  # channel -> ts -> message
        self.reactions: dict[tuple[str, str], dict[str, list[str]]] = {}  # (channel, ts) -> name -> users
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.home_tabs: dict[str, str] = {}  # user_id -> view id
        self.assistant_status: dict[tuple[str, str], str] = {}
        self.response_urls: dict[str, list[dict[str, Any]]] = {}  # full URL -> JSON bodies POSTed to it
        self.envelopes: dict[str, dict[str, Any]] = {}
        self.event_sent_at: dict[str, float] = {}
        self.acks: dict[str, dict[str, Any]] = {}
        self.socket_received: list[dict[str, Any]] = []
        self.connection_count = 0
        self.refusing_channels: dict[str, str] = {}  # channel -> chat.postMessage error (archived, gone, left)
        self.gone_threads: dict[tuple[str, str], str] = {}  # (channel, thread_ts) -> error for replies to it

        self.sockets = SocketHub(
            distribution=distribution,
            seed=seed,
            redeliver_after=redeliver_after,
            max_retries=max_retries,
            notify=lambda: self._changed.set(),
            is_acked=lambda envelope_id: envelope_id in self.acks,
            register=self._register_envelope,
        )
        self._tickets: set[str] = set()
        self._failures: dict[str, list[_Failure]] = {}
        self._overrides: dict[str, ResponseOverride] = {}
        self._ts_micros = itertools.count(100, 100)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started_at = time.monotonic()
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.replies": self._conversations_replies,
            "conversations.history": self._conversations_history,
            "views.publish": self._views_publish,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "assistant.threads.setStatus": self._assistant_set_status,
            "apps.connections.open": self._apps_connections_open,
        }
        self._init_teams(client_id, client_secret)
        self._init_assistant()
        self.add_user(bot_user_id, name=bot_name, is_bot=True)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind an ephemeral loopback port, so parallel tests never collide."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_get("/link", self._handle_socket)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self._started_at = time.monotonic()

    async def stop(self) -> None:
        """Close sockets first, so the server shuts down without waiting on open websockets."""
        await self.sockets.stop()
        await self.close_sockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeSlack:
        """Start on entry, so ``async with FakeSlack() as fake`` is enough in a fixture."""
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop on exit even when the test failed."""
        await self.stop()

    @property
    def base_url(self) -> str:
        """Root URL of the fake, for response URLs and ad-hoc requests."""
        if self._port is None:
            raise RuntimeError("FakeSlack.start() has not been awaited")
        return f"http://127.0.0.1:{self._port}"

    @property
    def api_url(self) -> str:
        """Web API base URL; the trailing slash matters because slack_sdk uses urljoin."""
        return f"{self.base_url}/api/"

    @property
    def open_connections(self) -> int:
        """Number of currently open Socket Mode websockets."""
        return len(self.sockets.open_sockets())

    @property
    def open_socket_ids(self) -> list[int]:
        """Connection numbers of the open sockets, oldest first (replica k's socket is k when they start in turn)."""
        return [c.id for c in self.sockets.open_sockets()]

    @property
    def connections(self) -> dict[int, SocketConn]:
        """Every socket ever accepted, by connection number (1, 2, ... in order of connection)."""
        return self.sockets.connections

    @property
    def deliveries(self) -> list[Delivery]:
        """Every envelope sent, in order: socket, time, attempt and retry reason."""
        return self.sockets.deliveries

    @property
    def refused_connections(self) -> int:
        """How many sockets were turned away because 10 were already open."""
        return len(self.sockets.refused)

    def deliveries_per_socket(self, kind: str | None = "events_api") -> dict[int, int]:
        """Envelopes delivered per connection number (events only by default; every kind with ``kind=None``)."""
        return dict(self.sockets.per_socket(kind))

    def deliveries_of(self, event_id: str) -> list[Delivery]:
        """Every delivery of one event_id (the first, then Slack's retries)."""
        return self.sockets.of_event(event_id)

    # ------------------------------------------------------------------ state builders

    def next_ts(self) -> str:
        """Return a unique, increasing Slack ts, so ordering and thread roots behave like Slack."""
        seconds, micros = divmod(next(self._ts_micros), 1_000_000)
        return f"{_TS_EPOCH + seconds}.{micros:06d}"

    def add_user(
        self,
        user_id: str,
        *,
        name: str,
        email: str | None = None,
        is_admin: bool = False,
        is_owner: bool = False,
        is_bot: bool = False,
        tz: str = "UTC",
        real_name: str | None = None,
        deleted: bool = False,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Register a user for users.info, shaped like Slack's user object (of ``team_id``, default the fake's team)."""
        with self._acting_as(self.team(team_id)):
            return self._add_user(user_id, name, email, is_admin, is_owner, is_bot, tz, real_name, deleted)

    def _add_user(
        self, user_id: str, name: str, email: str | None, is_admin: bool, is_owner: bool, is_bot: bool, tz: str,
        real_name: str | None, deleted: bool,
    ) -> dict[str, Any]:
        """Build and store the user object as the current team."""
        real = real_name or name
        profile: dict[str, Any] = {"real_name": real, "display_name": name, "team": self.team_id}
        if email is not None:
            profile["email"] = email
        if is_bot:
            profile["bot_id"] = self.bot_id if user_id == self.bot_user_id else f"B{user_id[1:]}"
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": real,
            "deleted": deleted,
            "tz": tz,
            "tz_label": tz,
            "tz_offset": _tz_offset(tz),
            "is_admin": is_admin,
            "is_owner": is_owner,
            "is_primary_owner": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "is_bot": is_bot,
            "is_app_user": False,
            "updated": int(time.time()),
            "profile": profile,
        }
        self.users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        *,
        name: str | None = None,
        is_private: bool | None = None,
        is_im: bool | None = None,
        is_mpim: bool = False,
        user: str | None = None,
        is_member: bool = True,
        is_archived: bool = False,
    ) -> dict[str, Any]:
        """Register a conversation for conversations.info; unset flags are guessed from the id prefix."""
        channel = _guess_channel(channel_id, creator=self.bot_user_id)
        im = channel["is_im"] if is_im is None else is_im
        private = channel["is_private"] if is_private is None else is_private
        channel.update(
            name=name or channel.get("name"),
            is_im=im,
            is_private=private or im,
            is_channel=not im and not is_mpim,
            is_group=private and not im and not is_mpim,
            is_mpim=is_mpim,
            is_member=is_member,
            is_archived=is_archived,
        )
        if im:
            channel["user"] = user or channel.get("user")
        self.channels[channel_id] = channel
        return channel

    def remember_message(self, event: dict[str, Any]) -> None:
        """Store a user message seen in an event, so replies, reactions and history can find it."""
        if event.get("type") not in ("message", "app_mention"):
            return
        if event.get("subtype") in ("message_changed", "message_deleted") or not event.get("ts"):
            return
        channel = event.get("channel")
        if not channel:
            return
        stored = self.messages.setdefault(channel, {})
        if event["ts"] in stored:
            return
        message = {k: v for k, v in event.items() if k not in ("channel", "event_ts", "channel_type")}
        message["type"] = "message"
        stored[event["ts"]] = message
        self._note_thread_reply(channel, message)

    def delete_thread(self, channel: str, thread_ts: str, *, error: str = "thread_not_found") -> None:
        """Delete a thread's parent and replies; a later reply to it is refused with `error`."""
        stored = self.messages.get(channel, {})
        for ts in [t for t, m in stored.items() if t == thread_ts or m.get("thread_ts") == thread_ts]:
            del stored[ts]
        self.gone_threads[(channel, thread_ts)] = error

    def refuse_channel(self, channel: str, error: str) -> None:
        """From now on chat.postMessage in `channel` answers `error`: is_archived (archiving also marks the
        channel archived), channel_not_found (deleted) or not_in_channel (the bot was removed)."""
        self.refusing_channels[channel] = error
        if error == "is_archived":
            self.channels.setdefault(channel, _guess_channel(channel, creator=self.bot_user_id))["is_archived"] = True

    def fail_next(
        self,
        method: str,
        *,
        error: str = "ratelimited",
        status: int | None = None,
        retry_after: int | None = 1,
        times: int = 1,
    ) -> None:
        """Script the next ``times`` calls of ``method`` to fail (429 + Retry-After for ratelimited).

        ``status`` defaults to 429 for ``ratelimited`` and to 200 (Slack's usual ``ok: false``) otherwise.
        """
        code = status if status is not None else (429 if error == "ratelimited" else 200)
        queue = self._failures.setdefault(method, [])
        queue.extend(_Failure(error=error, status=code, retry_after=retry_after) for _ in range(times))

    def set_response(self, method: str, body: ResponseOverride) -> None:
        """Answer ``method`` with a fixed body or ``body(args)``, for methods the fake does not model."""
        self._overrides[method] = body

    def new_response_url(self) -> str:
        """Mint a response_url on the fake, so ``respond()`` calls are recorded instead of leaving the box."""
        url = f"{self.base_url}/response/{uuid.uuid4().hex}"
        self.response_urls.setdefault(url, [])
        return url

    # ------------------------------------------------------------------ queries

    def calls_to(self, method: str) -> list[ApiCall]:
        """All recorded calls of one method, including failed ones (check ``.ok`` / ``.scripted``)."""
        return [c for c in self.calls if c.method == method]

    def posted_messages(self, channel: str | None = None, *, team_id: str | None = None) -> list[dict[str, Any]]:
        """Arguments of successful chat.postMessage calls, plus the ``ts`` the fake assigned.

        Every team's by default (with one team, as before, that is the fake's own); ``team_id`` keeps one team's.
        """
        return [
            {**c.args, "ts": c.response["ts"]}
            for c in self.calls
            if c.method == "chat.postMessage"
            and c.ok
            and (channel is None or c.args.get("channel") == channel)
            and (team_id is None or c.team_id == team_id)
        ]

    def reactions_on(self, channel: str, ts: str) -> dict[str, list[str]]:
        """Reaction name -> reacting users for one message, as reactions.add/remove left them."""
        return {k: list(v) for k, v in self.reactions.get((channel, ts), {}).items() if v}

    def describe_calls(self) -> str:
        """Readable log of every call, for assertion messages."""
        if not self.calls:
            return "  (no Web API calls)"
        lines = []
        for c in self.calls:
            outcome = "ok" if c.ok else f"{c.status} {c.error}{' (scripted)' if c.scripted else ''}"
            args = ", ".join(f"{k}={v!r}" for k, v in c.args.items())
            lines.append(f"  +{c.at - self._started_at:.3f}s {c.method} [{outcome}] {args[:300]}")
        return "\n".join(lines)

    async def wait_until(
        self,
        condition: Callable[[], Any],
        *,
        timeout: float = 5.0,
        what: str = "condition",
    ) -> Any:
        """Wait until ``condition()`` is truthy and return it; wakes on fake activity, polls every 20 ms."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = condition()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(_POLL_SECONDS, remaining))
            except TimeoutError:
                pass

    async def wait_for(
        self,
        predicate_or_method: str | Callable[[ApiCall], bool],
        *,
        count: int = 1,
        timeout: float = 5.0,
    ) -> list[ApiCall]:
        """Wait for ``count`` matching calls and return all matches; a method name counts only ok calls."""
        if isinstance(predicate_or_method, str):
            method = predicate_or_method

            def matches(call: ApiCall) -> bool:
                return call.method == method and call.ok

            what = f"{count} successful {method} call(s)"
        else:
            matches = predicate_or_method
            what = f"{count} call(s) matching {getattr(predicate_or_method, '__name__', 'predicate')}"

        def found() -> list[ApiCall]:
            hits = [c for c in self.calls if matches(c)]
            return hits if len(hits) >= count else []

        try:
            return await self.wait_until(found, timeout=timeout, what=what)
        except AssertionError:
            got = len([c for c in self.calls if matches(c)])
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; {got} matched. "
                f"Received:\n{self.describe_calls()}"
            ) from None

    async def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the client's ack of one envelope and return ``{"payload": ..., "at": ...}``."""
        try:
            return await self.wait_until(lambda: self.acks.get(envelope_id), timeout=timeout, what="ack")
        except AssertionError:
            raise AssertionError(
                f"no ack for envelope {envelope_id} within {timeout}s; acked: {sorted(self.acks)}; "
                f"open sockets: {self.open_connections}. Web API calls:\n{self.describe_calls()}"
            ) from None

    async def wait_connected(self, n: int = 1, timeout: float = 5.0, *, at_once: bool = False) -> None:
        """Wait until ``n`` Socket Mode connections were ever opened and one is still open.

        With ``at_once=True``: until ``n`` sockets are open at the same time (n replicas connected).
        """
        def ready() -> bool:
            if at_once:
                return self.open_connections >= n
            return self.connection_count >= n and self.open_connections > 0

        try:
            await self.wait_until(ready, timeout=timeout, what="socket connection")
        except AssertionError:
            raise AssertionError(
                f"expected {n} Socket Mode connection(s) within {timeout}s; got {self.connection_count} "
                f"({self.open_connections} open). Web API calls:\n{self.describe_calls()}"
            ) from None

    # ------------------------------------------------------------------ event builders

    def app_mention_event(
        self,
        user: str,
        channel: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        *,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Build an app_mention event; ``<@bot>`` is prepended when missing, as Slack's text always has it.

        With ``team_id`` the event comes from that team (its bot is the one mentioned).
        """
        with self._acting_as(self.team(team_id)):
            return self._app_mention_event(user, channel, text, ts, thread_ts)

    def _app_mention_event(
        self, user: str, channel: str, text: str, ts: str | None, thread_ts: str | None,
    ) -> dict[str, Any]:
        """app_mention_event as the current team."""
        mention = f"<@{self.bot_user_id}>"
        body = text if mention in text else f"{mention} {text}".rstrip()
        ts = ts or self.next_ts()
        event: dict[str, Any] = {
            "type": "app_mention",
            "user": user,
            "text": body,
            "ts": ts,
            "client_msg_id": str(uuid.uuid4()),
            "team": self.team_id,
            "channel": channel,
            "event_ts": ts,
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = self._parent_user(channel, thread_ts)
        return event

    def message_event(
        self,
        user: str,
        channel: str,
        text: str,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str | None = None,
        subtype: str | None = None,
        bot_id: str | None = None,
        files: list[dict[str, Any]] | None = None,
        *,
        team_id: str | None = None,
    ) -> dict[str, Any]:
        """Build a message event; ``channel_type`` defaults from the id prefix (D=im, G=group, C=channel)."""
        with self._acting_as(self.team(team_id)):
            return self._message_event(user, channel, text, ts, thread_ts, channel_type, subtype, bot_id, files)

    def _message_event(
        self, user: str, channel: str, text: str, ts: str | None, thread_ts: str | None, channel_type: str | None,
        subtype: str | None, bot_id: str | None, files: list[dict[str, Any]] | None,
    ) -> dict[str, Any]:
        """message_event as the current team."""
        ts = ts or self.next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "team": self.team_id,
        }
        if bot_id is None:
            event["client_msg_id"] = str(uuid.uuid4())
        else:
            event["bot_id"] = bot_id
            event["app_id"] = self.app_id if bot_id == self.bot_id else f"A{bot_id[1:]}"
        if subtype:
            event["subtype"] = subtype
        if files is not None:
            event["files"] = files
            event["upload"] = False
        if thread_ts:
            event["thread_ts"] = thread_ts
            event["parent_user_id"] = self._parent_user(channel, thread_ts)
        event.update(channel=channel, event_ts=ts, channel_type=channel_type or _channel_type(channel))
        return event

    def reaction_added_event(
        self,
        user: str,
        reaction: str,
        item_channel: str,
        item_ts: str,
        item_user: str | None = None,
    ) -> dict[str, Any]:
        """Build a reaction_added event; ``item_user`` defaults to the bot (feedback on its answers)."""
        return {
            "type": "reaction_added",
            "user": user,
            "reaction": reaction,
            "item": {"type": "message", "channel": item_channel, "ts": item_ts},
            "item_user": item_user or self.bot_user_id,
            "event_ts": self.next_ts(),
        }

    def reaction_removed_event(
        self,
        user: str,
        reaction: str,
        item_channel: str,
        item_ts: str,
        item_user: str | None = None,
    ) -> dict[str, Any]:
        """Build a reaction_removed event, the mirror of reaction_added."""
        event = self.reaction_added_event(user, reaction, item_channel, item_ts, item_user)
        event["type"] = "reaction_removed"
        return event

    # ------------------------------------------------------------------ Socket Mode (server -> client)

    async def send_event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        socket: int | None = None,
        team_id: str | None = None,
        is_ext_shared_channel: bool = False,
    ) -> str:
        """Deliver an events_api envelope and return its envelope_id.

        It goes to the socket the distribution picks, or to connection number ``socket`` when given.
        With ``team_id`` it comes from that team (its team_id, enterprise and bot authorization).
        """
        team = self.team(team_id)
        with self._acting_as(team):
            self.remember_message(event)
        payload = self.event_body(event, team_id=team.id, event_id=event_id,
                                  is_ext_shared_channel=is_ext_shared_channel)
        extra = {"retry_attempt": retry_attempt, "retry_reason": retry_reason}
        return await self._send_envelope(
            "events_api", payload, accepts_response_payload=False, extra=extra, socket=socket,
            attempt=retry_attempt, reason=retry_reason,
        )

    async def send_slash_command(
        self,
        command: str = "/uppzy",
        text: str = "",
        *,
        user_id: str,
        channel_id: str,
        team_id: str | None = None,
    ) -> str:
        """Deliver a slash_commands envelope (with a response_url on the fake) and return its envelope_id."""
        payload = slash_command_form(
            command,
            text,
            user_id=user_id,
            channel_id=channel_id,
            team_id=team_id or self.team_id,
            api_app_id=self.app_id,
            response_url=self.new_response_url(),
            trigger_id=self._trigger_id(),
            team_domain=self.team(team_id).domain,
        )
        team = self.team(team_id)
        if team.enterprise_id is not None:
            payload.update(enterprise_id=team.enterprise_id, enterprise_name=team.enterprise_name or "",
                           is_enterprise_install=str(team.org_wide).lower())
        return await self._send_envelope("slash_commands", payload, accepts_response_payload=True)

    async def send_interactive(self, payload: dict[str, Any], *, team_id: str | None = None) -> str:
        """Deliver an interactive envelope (block_actions, view_submission, ...); return its envelope_id."""
        body = self.interactive_payload(payload, team_id=team_id)
        accepts = body.get("type") in ("view_submission", "block_suggestion")
        return await self._send_envelope("interactive", body, accepts_response_payload=accepts)

    def interactive_payload(self, payload: dict[str, Any], *, team_id: str | None = None) -> dict[str, Any]:
        """Fill an interactive payload the way Slack does (team, enterprise, view fields) for one team; HTTP-mode
        tests POST ``interactive_form(fake.interactive_payload(...))``."""
        team = self.team(team_id)
        with self._acting_as(team):
            body = self._interactive_payload(payload)
        if team.id != self._default_team_id and isinstance(body.get("view"), dict):
            body["view"].setdefault("app_installed_team_id", team.id)
        return body

    def _interactive_payload(self, payload: dict[str, Any]) -> dict[str, Any]:
        """interactive_payload as the current team."""
        body = copy.deepcopy(payload)
        team_info: dict[str, Any] = {"id": self.team_id, "domain": self.team_domain}
        enterprise = None
        if self.enterprise_id is not None:
            team_info["enterprise_id"] = self.enterprise_id
            enterprise = {"id": self.enterprise_id, "name": self.team(self.team_id).enterprise_name}
        body.setdefault("team", team_info)
        body.setdefault("api_app_id", self.app_id)
        body.setdefault("token", "fake-verification-token")
        body.setdefault("is_enterprise_install", self.is_enterprise_install)
        body.setdefault("enterprise", enterprise)
        body.setdefault("trigger_id", self._trigger_id())
        if isinstance(body.get("user"), dict):
            body["user"].setdefault("team_id", self.team_id)
        if body.get("type") == "block_actions" and "view" not in body:
            body.setdefault("response_url", self.new_response_url())
        if isinstance(body.get("view"), dict):
            # bolt reads view["type"] while matching; without it dispatch fails and nothing is acked.
            view = body["view"]
            known = self.views.get(str(view.get("id", "")), {})
            for key, default in (
                ("id", f"V{next(self._ids):010d}"),
                ("type", "modal"),
                ("team_id", self.team_id),
                ("callback_id", ""),
                ("private_metadata", ""),
                ("state", {"values": {}}),
                ("hash", f"{int(time.time())}.{uuid.uuid4().hex[:8]}"),
                ("app_id", self.app_id),
                ("bot_id", self.bot_id),
            ):
                view.setdefault(key, known.get(key, default))
        return body

    async def send_disconnect(self, reason: str = "refresh_requested", *, socket: int | None = None) -> None:
        """Ask a client to reconnect, as Slack does every few hours: the newest socket, or number ``socket``."""
        conn = self.connections[socket] if socket is not None else await self._newest_socket()
        await conn.ws.send_json({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake-slack"}})

    async def close_sockets(self) -> None:
        """Close every websocket from the server side (the aiohttp client reconnects at once)."""
        for conn in self.sockets.open_sockets():
            await self.sockets.close(conn)

    async def close_socket(self, socket: int, *, abort: bool = False) -> None:
        """Close connection number ``socket`` from the server side; ``abort`` cuts TCP with no close frame."""
        await self.sockets.close(self.connections[socket], abort=abort)

    async def _send_envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        extra: dict[str, Any] | None = None,
        socket: int | None = None,
        attempt: int = 0,
        reason: str = "",
    ) -> str:
        """Send one envelope on the chosen socket and note when, so tests can measure ack latency."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
            **(extra or {}),
        }
        if socket is not None:
            conn = self.connections[socket]
        else:
            await self._newest_socket()
            conn = self.sockets.choose()
            assert conn is not None
        await self.sockets.send(conn, envelope, attempt=attempt, reason=reason)
        return envelope_id

    def _register_envelope(self, envelope: dict[str, Any]) -> None:
        """Remember an envelope and when it left, just before it is sent (first delivery or redelivery)."""
        self.envelopes[envelope["envelope_id"]] = envelope
        self.event_sent_at[envelope["envelope_id"]] = time.monotonic()

    async def _newest_socket(self, timeout: float = 5.0) -> SocketConn:
        """Return the most recent open socket, waiting briefly so a reconnect in flight is not an error."""
        try:
            await self.wait_until(lambda: self.open_connections > 0, timeout=timeout, what="open socket")
        except AssertionError:
            raise AssertionError(
                f"no Socket Mode client connected within {timeout}s "
                f"({self.connection_count} connection(s) ever opened). "
                f"Web API calls:\n{self.describe_calls()}"
            ) from None
        return self.sockets.open_sockets()[-1]

    # ------------------------------------------------------------------ HTTP handlers

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        """Accept a Socket Mode client holding a ticket from apps.connections.open."""
        if request.query.get("ticket") not in self._tickets:
            raise web.HTTPUnauthorized(text="invalid or missing ticket")
        # autoping answers the SDK's "sdk-ping-pong" pings; without pongs it reconnects over and over.
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        conn = self.sockets.accept(ws, request.query["ticket"], _peer(request), request.transport)
        if conn is None:  # Slack turns an 11th concurrent socket away like this
            disconnect = {"type": "disconnect", "reason": TOO_MANY_WEBSOCKETS, "debug_info": {"host": "fake-slack"}}
            await ws.send_json(disconnect)
            await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=TOO_MANY_WEBSOCKETS.encode())
            return ws
        self.connection_count += 1
        try:
            await ws.send_json(
                {
                    "type": "hello",
                    "num_connections": self.open_connections,
                    "debug_info": {
                        "host": "fake-slack",
                        "build_number": 1,
                        "approximate_connection_time": 18060,
                    },
                    "connection_info": {"app_id": self.app_id},
                }
            )
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_client_message(msg.data, conn.id)
        finally:
            self.sockets.closed(conn)
        return ws

    def _on_client_message(self, raw: str, socket: int = 0) -> None:
        """Record what the client sent; anything with an envelope_id is an ack."""
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"_raw": raw}
        if not isinstance(data, dict):
            data = {"_raw": data}
        self.socket_received.append(data)
        envelope_id = data.get("envelope_id")
        if envelope_id:
            self.acks[envelope_id] = {"payload": data.get("payload"), "at": time.monotonic(), "socket": socket}
            self.sockets.acked(envelope_id)
        self._changed.set()

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        """Record a respond() body; real response_urls answer a small JSON ok."""
        url = f"{self.base_url}/response/{request.match_info['rid']}"
        raw = await request.text()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_raw": raw}
        self.response_urls.setdefault(url, []).append(body)
        self._changed.set()
        return web.json_response({"ok": True})

    async def _handle_api(self, request: web.Request) -> web.Response:
        """Answer one Web API call: merge arguments, check the token, apply scripts, record."""
        method = request.match_info["method"]
        at = time.monotonic()
        headers = dict(request.headers)
        try:
            args = await _read_args(request)
        except ValueError:
            args = {}
            call = ApiCall(method, args, "", headers, at, request.method, 200, False, "invalid_json")
            return self._record(call, {"ok": False, "error": "invalid_json"}, {})
        token = _bearer(request) or str(args.pop("token", ""))
        args.pop("token", None)
        call = ApiCall(
            method=method, args=args, token=token, headers=headers, at=at, http_verb=request.method
        )

        auth_error, team = (None, None) if method == OAUTH_METHOD else self._check_token(method, token)
        if auth_error:
            return self._record(call, {"ok": False, "error": auth_error}, {})
        call.team_id = team.id if team is not None else None
        queue = self._failures.get(method)
        if queue:
            failure = queue.pop(0)
            call.scripted = True
            call.status = failure.status
            extra = {}
            if failure.status == 429 and failure.retry_after is not None:
                extra["Retry-After"] = str(failure.retry_after)
            return self._record(call, {"ok": False, "error": failure.error}, extra)
        try:
            with self._acting_as(team):
                override = self._overrides.get(method)
                if override is not None:
                    body = dict(override(args) if callable(override) else override)
                elif method == OAUTH_METHOD:
                    body, call.team_id = self._oauth_v2_access(args, request.headers.get("Authorization", ""))
                else:
                    handler = self._handlers.get(method)
                    body = handler(args) if handler else {}
        except _Refusal as refusal:
            return self._record(call, {"ok": False, "error": refusal.error}, {})
        return self._record(call, {"ok": True, **body}, {})

    def _record(self, call: ApiCall, body: dict[str, Any], headers: dict[str, str]) -> web.Response:
        """Store the call with its outcome and build the HTTP answer."""
        call.ok = bool(body.get("ok"))
        call.error = body.get("error")
        call.response = body
        self.calls.append(call)
        self._changed.set()
        return web.json_response(body, status=call.status, headers=headers)

    # ------------------------------------------------------------------ Web API methods

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        """Identity bolt caches as context.bot_user_id; it drives the ignore-self filter."""
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": self.is_enterprise_install,
            **({"enterprise_id": self.enterprise_id} if self.enterprise_id is not None else {}),
        }

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        """Store the message under a fresh ts and echo it back like Slack."""
        channel = self._resolve_channel(_required(args, "channel", "channel_not_found"))
        text = args.get("markdown_text") or args.get("text") or ""
        if not text and not args.get("blocks") and not args.get("attachments"):
            raise _Refusal("no_text")
        if channel in self.refusing_channels:
            raise _Refusal(self.refusing_channels[channel])
        if args.get("thread_ts") and (channel, str(args["thread_ts"])) in self.gone_threads:
            raise _Refusal(self.gone_threads[(channel, str(args["thread_ts"]))])
        blocks = args.get("blocks") or []
        self.check_blocks(blocks)
        if any(len((b.get("text") or {}).get("text") or "") > _SECTION_TEXT_LIMIT for b in blocks
               if b.get("type") == "section"):
            raise _Refusal("invalid_blocks")
        if _text_length(blocks) > _BLOCKS_TEXT_LIMIT:
            raise _Refusal("msg_blocks_too_long")
        ts = self.next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "text": text,
            "ts": ts,
            "blocks": args.get("blocks") or [],
            "bot_profile": {
                "id": self.bot_id,
                "app_id": self.app_id,
                "name": self.bot_name,
                "team_id": self.team_id,
            },
        }
        for key in ("attachments", "metadata"):
            if args.get(key):
                message[key] = args[key]
        if args.get("thread_ts"):
            message["thread_ts"] = str(args["thread_ts"])
            message["parent_user_id"] = self._parent_user(channel, message["thread_ts"])
            if _truthy(args.get("reply_broadcast")):
                message["subtype"] = "thread_broadcast"
        self.messages.setdefault(channel, {})[ts] = message
        self._note_thread_reply(channel, message)
        return {"channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """Edit a stored message; only the bot's own messages can be edited."""
        channel, ts, message = self._own_message(args, "cant_update_message")
        self.check_blocks(args.get("blocks"))
        if "markdown_text" in args or "text" in args:
            message["text"] = args.get("markdown_text") or args.get("text") or ""
        for key in ("blocks", "attachments", "metadata"):
            if key in args:
                message[key] = args[key]
        message["edited"] = {"user": self.bot_user_id, "ts": self.next_ts()}
        return {"channel": channel, "ts": ts, "text": message["text"], "message": copy.deepcopy(message)}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        """Remove a stored message; only the bot's own messages can be deleted."""
        channel, ts, _ = self._own_message(args, "cant_delete_message")
        del self.messages[channel][ts]
        return {"channel": channel, "ts": ts}

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        """Record an ephemeral message (never stored in history, as in Slack)."""
        channel = _required(args, "channel", "channel_not_found")
        user = _required(args, "user", "user_not_found")
        ts = self.next_ts()
        self.ephemerals.append({**args, "channel": channel, "user": user, "message_ts": ts})
        return {"message_ts": ts}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        """Build the archive URL Slack would; unknown messages are allowed since it is pure formatting."""
        channel = _required(args, "channel", "channel_not_found")
        ts = str(_required(args, "message_ts", "message_not_found"))
        link = f"https://{self.team_domain}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        thread_ts = self.messages.get(channel, {}).get(ts, {}).get("thread_ts")
        if thread_ts and thread_ts != ts:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        """Add the bot's reaction; a duplicate is ``already_reacted`` as in Slack."""
        key, name = self._reaction_target(args)
        users = self.reactions.setdefault(key, {}).setdefault(name, [])
        if self.bot_user_id in users:
            raise _Refusal("already_reacted")
        users.append(self.bot_user_id)
        self._sync_reactions(key)
        return {}

    def _reactions_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        """Remove the bot's reaction; a missing one is ``no_reaction`` as in Slack."""
        key, name = self._reaction_target(args)
        users = self.reactions.get(key, {}).get(name, [])
        if self.bot_user_id not in users:
            raise _Refusal("no_reaction")
        users.remove(self.bot_user_id)
        self._sync_reactions(key)
        return {}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Look a user up in ``fake.users``."""
        user = self.users.get(str(args.get("user", "")))
        if user is None:
            raise _Refusal("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        """Return the registered channel, or one guessed from the id prefix (D=im, G=private, C=public)."""
        channel_id = _required(args, "channel", "channel_not_found")
        channel = self.channels.get(channel_id) or _guess_channel(channel_id, creator=self.bot_user_id)
        return {"channel": copy.deepcopy(channel)}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        """Thread root plus replies in ts order, from stored messages."""
        channel = _required(args, "channel", "channel_not_found")
        root = str(_required(args, "ts", "thread_not_found"))
        stored = self.messages.get(channel, {})
        if root not in stored:
            raise _Refusal("thread_not_found")
        thread = [m for t, m in stored.items() if t == root or m.get("thread_ts") == root]
        thread.sort(key=lambda m: float(m["ts"]))
        return {
            "messages": copy.deepcopy(thread),
            "has_more": False,
            "response_metadata": {"next_cursor": ""},
        }

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages newest first, honouring oldest/latest/limit."""
        channel = _required(args, "channel", "channel_not_found")
        oldest = float(args.get("oldest") or 0)
        latest = float(args.get("latest") or "inf")
        limit = int(args.get("limit") or 100)
        top = [
            m
            for m in self.messages.get(channel, {}).values()
            if (m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast")
            and oldest <= float(m["ts"]) <= latest
        ]
        top.sort(key=lambda m: float(m["ts"]), reverse=True)
        return {
            "messages": copy.deepcopy(top[:limit]),
            "has_more": len(top) > limit,
            "pin_count": 0,
            "response_metadata": {"next_cursor": ""},
        }

    def _views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        """Publish a Home tab; the same user keeps the same view id, as in Slack."""
        user_id = _required(args, "user_id", "invalid_arguments")
        view = _required(args, "view", "invalid_arguments")
        stored = self._store_view(view, view_id=self.home_tabs.get(user_id))
        self.home_tabs[user_id] = stored["id"]
        return {"view": copy.deepcopy(stored)}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Open (or push) a modal; it needs a trigger_id like the real API."""
        if not args.get("trigger_id") and not args.get("interactivity_pointer"):
            raise _Refusal("invalid_arguments")
        stored = self._store_view(_required(args, "view", "invalid_arguments"))
        return {"view": copy.deepcopy(stored)}

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        """Replace a stored view by view_id or external_id; a stale hash is ``hash_conflict``."""
        view = _required(args, "view", "invalid_arguments")
        view_id = args.get("view_id")
        if not view_id and args.get("external_id"):
            matches = [v["id"] for v in self.views.values() if v["external_id"] == args["external_id"]]
            view_id = matches[0] if matches else None
        if not view_id or view_id not in self.views:
            raise _Refusal("not_found")
        if args.get("hash") and args["hash"] != self.views[view_id]["hash"]:
            raise _Refusal("hash_conflict")
        return {"view": copy.deepcopy(self._store_view(view, view_id=view_id))}

    def _assistant_set_status(self, args: dict[str, Any]) -> dict[str, Any]:
        """Remember the assistant thread status ("" clears it)."""
        channel = _required(args, "channel_id", "channel_not_found")
        thread_ts = str(_required(args, "thread_ts", "invalid_arguments"))
        self.assistant_status[(channel, thread_ts)] = str(args.get("status", ""))
        return {}

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        """Issue a one-off websocket URL on this fake; this is the only knob Socket Mode needs."""
        ticket = str(uuid.uuid4())
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"}

    # ------------------------------------------------------------------ helpers

    def _resolve_channel(self, channel: str) -> str:
        """Posting to a user id lands in the DM with that user, as in Slack."""
        if channel[:1] in ("U", "W"):
            dm = f"D{channel[1:]}"
            if dm not in self.channels:
                self.add_channel(dm, is_im=True, user=channel)
            return dm
        return channel

    def _own_message(self, args: dict[str, Any], not_own_error: str) -> tuple[str, str, dict[str, Any]]:
        """Find a stored message the bot may edit or delete."""
        channel = _required(args, "channel", "channel_not_found")
        ts = str(_required(args, "ts", "message_not_found"))
        message = self.messages.get(channel, {}).get(ts)
        if message is None:
            raise _Refusal("message_not_found")
        if message.get("bot_id") != self.bot_id:
            raise _Refusal(not_own_error)
        return channel, ts, message

    def _reaction_target(self, args: dict[str, Any]) -> tuple[tuple[str, str], str]:
        """Validate reactions.* arguments and return ((channel, ts), name)."""
        name = str(args.get("name") or "")
        if not name:
            raise _Refusal("invalid_name")
        if not args.get("channel") or not args.get("timestamp"):
            raise _Refusal("no_item_specified")
        return (str(args["channel"]), str(args["timestamp"])), name

    def _sync_reactions(self, key: tuple[str, str]) -> None:
        """Mirror reactions onto the stored message, as conversations.history shows them."""
        message = self.messages.get(key[0], {}).get(key[1])
        if message is None:
            return
        reactions = [
            {"name": n, "users": list(u), "count": len(u)} for n, u in self.reactions[key].items() if u
        ]
        if reactions:
            message["reactions"] = reactions
        else:
            message.pop("reactions", None)

    def _note_thread_reply(self, channel: str, message: dict[str, Any]) -> None:
        """Keep the thread root's reply_count, as Slack shows it in history."""
        thread_ts = message.get("thread_ts")
        root = self.messages.get(channel, {}).get(thread_ts) if thread_ts else None
        if root is None or thread_ts == message["ts"]:
            return
        root["thread_ts"] = thread_ts
        root["reply_count"] = root.get("reply_count", 0) + 1
        root["latest_reply"] = message["ts"]

    def _parent_user(self, channel: str, thread_ts: str) -> str:
        """Author of a thread root, for ``parent_user_id`` on replies."""
        root = self.messages.get(channel, {}).get(thread_ts, {})
        return str(root.get("user") or self.bot_user_id)

    def _store_view(self, view: dict[str, Any], *, view_id: str | None = None) -> dict[str, Any]:
        """Turn a view payload into Slack's view object with id, hash and empty state."""
        vid = view_id or f"V{next(self._ids):010d}"
        stored = {
            "id": vid,
            "team_id": self.team_id,
            "type": view.get("type", "modal"),
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{uuid.uuid4().hex[:8]}",
            "clear_on_close": view.get("clear_on_close", False),
            "notify_on_close": view.get("notify_on_close", False),
            "root_view_id": vid,
            "previous_view_id": None,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        self.views[vid] = stored
        return stored

    def _trigger_id(self) -> str:
        """A trigger_id shaped like Slack's."""
        return f"{next(self._ids)}.{int(time.time())}.{uuid.uuid4().hex[:24]}"


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merge query string, form and JSON arguments: slack_sdk uses all three, even on POST."""
    args: dict[str, Any] = dict(request.query)
    if request.method == "POST" and request.body_exists:
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            args.update(body)
        else:
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    args[key] = value
                else:
                    args[key] = {"filename": value.filename, "content_type": value.content_type}
    for key in _JSON_ARG_KEYS & args.keys():
        value = args[key]
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                args[key] = json.loads(value)
            except ValueError:
                pass
    return args


def _bearer(request: web.Request) -> str:
    """Token from ``Authorization: Bearer``, where slack_sdk always puts it."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header.startswith("Bearer ") else ""


def _required(args: dict[str, Any], key: str, error: str) -> Any:
    """Fetch a mandatory argument or refuse with Slack's error for it."""
    value = args.get(key)
    if value in (None, ""):
        raise _Refusal(error)
    return value


def _text_length(value: Any) -> int:
    """Characters of every "text" string inside blocks (what Slack's cumulative block limit counts, at least)."""
    if isinstance(value, list):
        return sum(_text_length(v) for v in value)
    if isinstance(value, dict):
        return sum(len(v) if k == "text" and isinstance(v, str) else _text_length(v) for k, v in value.items())
    return 0


def _truthy(value: Any) -> bool:
    """Slack form values arrive as "1"/"true" strings, JSON ones as booleans."""
    return value is True or str(value).lower() in ("1", "true")


def _channel_type(channel_id: str) -> str:
    """Event ``channel_type`` from a conversation id prefix."""
    return {"D": "im", "G": "group"}.get(channel_id[:1], "channel")


def _guess_channel(channel_id: str, *, creator: str) -> dict[str, Any]:
    """A conversations.info object whose flags follow the id prefix (D=im, G=private, C=public)."""
    is_im = channel_id.startswith("D")
    is_private = channel_id.startswith("G")
    channel: dict[str, Any] = {
        "id": channel_id,
        "created": _TS_EPOCH,
        "is_channel": not is_im and not is_private,
        "is_group": is_private,
        "is_im": is_im,
        "is_mpim": False,
        "is_private": is_private or is_im,
        "is_archived": False,
        "is_general": False,
        "is_shared": False,
        "is_ext_shared": False,
        "is_org_shared": False,
        "is_member": True,
    }
    if is_im:
        channel.update(user=f"U{channel_id[1:]}", is_user_deleted=False, priority=0)
    else:
        channel.update(
            name=channel_id.lower(),
            name_normalized=channel_id.lower(),
            creator=creator,
            topic={"value": "", "creator": "", "last_set": 0},
            purpose={"value": "", "creator": "", "last_set": 0},
            num_members=2,
        )
    return channel


def _tz_offset(tz: str) -> int:
    """UTC offset in seconds for users.info; 0 when the zone database is unavailable."""
    try:
        offset = datetime.now(ZoneInfo(tz)).utcoffset()
    except Exception:  # tzdata may be missing on minimal images
        return 0
    return int(offset.total_seconds()) if offset else 0


def _peer(request: web.Request) -> Any:
    """(host, port) of a websocket client, so tests can tell two processes' sockets apart."""
    return request.transport.get_extra_info("peername") if request.transport is not None else None
