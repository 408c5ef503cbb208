"""Loopback fake of Discord (REST under /api/v10 plus the gateway) so the real discord.py stack runs offline.

Point discord.py at it with exactly two class attributes, set before ``client.login()``/``connect()``::

    discord.http.Route.BASE = fake.api_base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)

Every JSON reply carries ``Content-Type: application/json`` exactly, because discord.py compares that
header with ``==`` and treats anything else (aiohttp's ``; charset=utf-8``) as plain text.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web

from tests.fakes.discord_forums import DiscordForums, TagError
from tests.fakes.discord_installs import DiscordUserInstalls

DISCORD_EPOCH_MS = 1420070400000
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ALL_PERMISSIONS = (1 << 51) - 1
# VIEW_CHANNEL, SEND_MESSAGES, ADD_REACTIONS, EMBED_LINKS, ATTACH_FILES, READ_MESSAGE_HISTORY,
# USE_APPLICATION_COMMANDS, CREATE_PUBLIC_THREADS, SEND_MESSAGES_IN_THREADS
DEFAULT_EVERYONE_PERMISSIONS = (
    (1 << 10) | (1 << 11) | (1 << 6) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31) | (1 << 35) | (1 << 38)
)
# everyone + MANAGE_MESSAGES, MANAGE_THREADS, CREATE_PRIVATE_THREADS
DEFAULT_BOT_PERMISSIONS = DEFAULT_EVERYONE_PERMISSIONS | (1 << 13) | (1 << 34) | (1 << 36)
EPHEMERAL_FLAG = 1 << 6
LOADING_FLAG = 1 << 7
THREAD_TYPES = frozenset({10, 11, 12})
ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024
JSON_HEADERS = {"Content-Type": "application/json"}

_Handler = Callable[..., Awaitable[web.Response]]


def _now_iso() -> str:
    """Timestamp in the ISO form Discord uses, so discord.py's parse_time accepts it."""
    return datetime.now(UTC).isoformat()


def _sid(value: Any) -> str | None:
    """Snowflakes travel as strings in Discord payloads (discord.py sends ints, so normalise both)."""
    return None if value is None else str(value)


def _infer_option_type(value: Any) -> int:
    """Guess an application-command option type when neither the caller nor a synced command says."""
    if isinstance(value, bool):
        return 5
    if isinstance(value, int):
        return 4
    if isinstance(value, float):
        return 10
    return 3


class _HttpError(Exception):
    """Raised by route handlers so the dispatcher can answer with Discord's JSON error shape."""

    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.code = code


@dataclass
class RestCall:
    """One REST request the fake received, kept so tests can assert on what the bot actually sent."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    at: float
    query: dict[str, str] = field(default_factory=dict)
    status: int | None = None
    files: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Fault:
    """A scripted failure (429 or 5xx) consumed by the next matching requests."""

    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: float = 0.0
    global_: bool = False


@dataclass
class _Session:
    """Gateway session state that survives reconnects, so RESUME can replay missed dispatches."""

    session_id: str
    intents: int
    shard: list[int] | None = None
    seq: int = 0
    backlog: list[tuple[int, str]] = field(default_factory=list)

    @property
    def shard_id(self) -> int:
        """The shard this session serves (0 when IDENTIFY named none)."""
        return self.shard[0] if self.shard else 0

    @property
    def shard_count(self) -> int:
        """The shard count it identified with (1 when IDENTIFY named none)."""
        return self.shard[1] if self.shard else 1


@dataclass
class _Conn:
    """One gateway websocket connection and whether it is the live, ready one."""

    ws: web.WebSocketResponse
    query: dict[str, str]
    session: _Session | None = None
    ready: bool = False
    closing: bool = False
    closed: bool = False
    close_code: int | None = None


class FakeDiscord(DiscordForums, DiscordUserInstalls):
    """Fake Discord server: a small world model, REST routes, a gateway, recordings and scripted faults."""

    def __init__(
        self,
        *,
        token: str = "fake-discord-token",
        bot_id: int = 1000,
        application_id: int = 1000,
        bot_name: str = "uppzy",
        heartbeat_interval: int = 41250,
    ) -> None:
        self.token = token
        self.bot_id = bot_id
        self.application_id = application_id
        self.bot_name = bot_name
        self.heartbeat_interval = heartbeat_interval
        self.application_flags = 0
        self.refuse_privileged_intents = False
        self.echo_own_events = True
        self.bot_manages_threads = False  # MANAGE_THREADS: needed to reopen a locked thread
        self.send_denied: dict[int, int] = {}  # channel id -> error code (50001 Missing Access, 50013 Permissions)
        self.requests: list[RestCall] = []
        self.interaction_responses: list[dict[str, Any]] = []
        self.followups: list[dict[str, Any]] = []
        self.webhook_edits: list[dict[str, Any]] = []
        self.dispatched: list[dict[str, Any]] = []
        self.gateway_frames: list[dict[str, Any]] = []
        self.bot_reactions: list[dict[str, Any]] = []
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.connections: list[_Conn] = []
        self.identify_count = 0
        self.identify_times: dict[int, list[float]] = {}  # shard id -> time.monotonic() of each accepted IDENTIFY
        self.refused_shards: list[list[int]] = []  # [id, count] of each IDENTIFY closed with 4010
        self.recommended_shards = 1  # GET /gateway/bot "shards"
        self.identify_spacing = 5.0  # Discord's window: max_concurrency IDENTIFYs per bucket per this many seconds
        self.concurrency_violations = 0  # IDENTIFYs sooner than identify_spacing after one in the same bucket
        self.over_limit_identifies = 0  # IDENTIFYs while session_start_limit had nothing remaining
        self._start_limit = {"total": 1000, "remaining": 999, "max_concurrency": 1}
        self._limit_reset_at = time.monotonic() + 86_400.0
        self.resume_count = 0
        self.heartbeat_count = 0
        self.identified_intents: int | None = None
        self._guilds: dict[int, dict[str, Any]] = {}
        self._channels: dict[int, dict[str, Any]] = {}
        self._users: dict[int, dict[str, Any]] = {}
        self._members: dict[tuple[int, int], dict[str, Any]] = {}
        self._messages: dict[int, dict[str, Any]] = {}
        self._meta: dict[int, dict[str, Any]] = {}
        self._typing: dict[int, int] = {}
        self._faults: list[_Fault] = []
        self._interactions: dict[int, dict[str, Any]] = {}
        self._command_ids: dict[tuple[int | None, str, int], int] = {}
        self._sessions: dict[int, _Session] = {}  # by shard id
        self._live: dict[int, _Conn] = {}  # the live connection of each shard
        self._shard_count = 1  # the count the last accepted IDENTIFY used
        self._changed = asyncio.Event()
        self._gw_lock = asyncio.Lock()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._last_id = 0
        self._users[bot_id] = {
            "id": str(bot_id),
            "username": bot_name,
            "global_name": None,
            "discriminator": "0",
            "avatar": None,
            "bot": True,
            "public_flags": 0,
        }
        self._routes = self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeDiscord:
        """Bind 127.0.0.1 on a free port so parallel tests never collide."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway-ws", self._gateway)
        app.router.add_get("/gateway-ws/", self._gateway)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        app.router.add_route("*", "/{tail:.*}", self._unversioned)
        self._runner = web.AppRunner(app, shutdown_timeout=2.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        """Close sockets from our side first, so runner cleanup never waits on a live gateway."""
        for conn in self.connections:
            if not conn.ws.closed:
                conn.closing = True
                try:
                    await asyncio.wait_for(conn.ws.close(code=1001, message=b"fake stopping"), 2.0)
                except (TimeoutError, ConnectionError, RuntimeError):
                    pass
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        """Start on entry so ``async with FakeDiscord() as fake`` is ready to use."""
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        """Stop on exit even when the test failed."""
        await self.stop()

    @property
    def port(self) -> int:
        """The bound port; only valid after start()."""
        if self._port is None:
            raise RuntimeError("FakeDiscord.start() has not been awaited")
        return self._port

    @property
    def api_base(self) -> str:
        """Value for discord.http.Route.BASE (no trailing slash, like the real one)."""
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        """Value for DiscordWebSocket.DEFAULT_GATEWAY; also used as READY's resume_gateway_url."""
        return f"ws://127.0.0.1:{self.port}/gateway-ws/"

    # ------------------------------------------------------------------ world model

    def new_id(self) -> int:
        """Monotonic, realistic snowflake so ids sort by creation like Discord's and match <@id> regexes."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(candidate, self._last_id + 1)
        return self._last_id

    def add_guild(
        self,
        guild_id: int,
        *,
        name: str = "Guild",
        owner_id: int = 1,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
    ) -> dict[str, Any]:
        """Register a guild with its @everyone role and the bot as a member (as after an install)."""
        guild: dict[str, Any] = {
            "id": str(guild_id),
            "name": name,
            "owner_id": str(owner_id),
            "roles": {},
            "joined_at": _now_iso(),
        }
        self._guilds[guild_id] = guild
        self.add_role(guild_id, guild_id, name="@everyone", permissions=everyone_permissions)
        bot_role = self.new_id()
        self.add_role(guild_id, bot_role, name=self.bot_name, permissions=bot_permissions, bot_id=self.bot_id)
        self._members[(guild_id, self.bot_id)] = self._member_record([bot_role])
        return guild

    def add_role(
        self, guild_id: int, role_id: int, *, name: str, permissions: int = 0, bot_id: int | None = None
    ) -> dict[str, Any]:
        """Add a role; members get permissions only through roles, exactly as discord.py computes them."""
        roles = self._guilds[guild_id]["roles"]
        role: dict[str, Any] = {
            "id": str(role_id),
            "name": name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": len(roles),
            "permissions": str(permissions),
            "managed": bot_id is not None,
            "mentionable": False,
            "flags": 0,
        }
        if bot_id is not None:
            role["tags"] = {"bot_id": str(bot_id)}
        roles[role_id] = role
        return role

    def add_user(self, user_id: int, *, name: str | None = None, bot: bool = False) -> dict[str, Any]:
        """Register a user (for DMs or authors who are not guild members)."""
        user = {
            "id": str(user_id),
            "username": name or f"user{user_id}",
            "global_name": name,
            "discriminator": "0",
            "avatar": None,
            "public_flags": 0,
        }
        if bot:
            user["bot"] = True
        self._users[user_id] = user
        return user

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        *,
        name: str | None = None,
        permissions: int = 0,
        bot: bool = False,
        roles: list[int] | None = None,
        nick: str | None = None,
    ) -> dict[str, Any]:
        """Add a guild member; non-zero ``permissions`` become a dedicated role so guild_permissions match."""
        if user_id not in self._users or name is not None:
            self.add_user(user_id, name=name, bot=bot)
        role_ids = list(roles or [])
        if permissions:
            role_id = self.new_id()
            self.add_role(guild_id, role_id, name=f"{name or user_id} perms", permissions=permissions)
            role_ids.append(role_id)
        member = self._member_record(role_ids, nick=nick)
        self._members[(guild_id, user_id)] = member
        return member

    def add_channel(
        self,
        guild_id: int | None,
        channel_id: int,
        *,
        type: int = 0,
        name: str = "general",
        parent_id: int | None = None,
        recipient_id: int | None = None,
        owner_id: int | None = None,
    ) -> dict[str, Any]:
        """Add a channel (0 text, 1 DM, 4 category, 5 news, 11 public thread, 15 forum) before connecting."""
        if guild_id is None or type == 1:
            recipients = [self._user_obj(recipient_id)] if recipient_id is not None else []
            channel = {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0,
                       "recipients": recipients}
            self._channels[channel_id] = channel
            return channel
        siblings = [c for c in self._channels.values() if c.get("guild_id") == str(guild_id)]
        channel = {
            "id": str(channel_id),
            "type": type,
            "guild_id": str(guild_id),
            "name": name,
            "position": len(siblings),
            "parent_id": _sid(parent_id),
            "permission_overwrites": [],
            "nsfw": False,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }
        if type in (0, 5, 15):
            channel["topic"] = None
            channel["default_auto_archive_duration"] = 1440
        if type == 15:
            channel.update(available_tags=[], default_reaction_emoji=None, default_sort_order=None,
                           default_forum_layout=0, default_thread_rate_limit_per_user=0)
        if type in THREAD_TYPES:
            owner = owner_id or self.bot_id
            channel = self._thread_obj(guild_id, parent_id or 0, channel_id, name, type, owner)
        self._channels[channel_id] = channel
        return channel

    def channel(self, channel_id: int) -> dict[str, Any] | None:
        """The fake's view of a channel or thread (threads the bot created appear here too)."""
        found = self._channels.get(int(channel_id))
        return copy.deepcopy(found) if found is not None else None

    def message(self, message_id: int) -> dict[str, Any] | None:
        """Any stored message (user or bot) by id."""
        found = self._messages.get(int(message_id))
        return copy.deepcopy(found) if found is not None else None

    # ------------------------------------------------------------------ recordings

    def messages_in(self, channel_id: int, *, include_ephemeral: bool = False) -> list[dict[str, Any]]:
        """Messages the bot posted in a channel (REST, interaction responses, follow-ups), oldest first.

        Each record is the message object plus ``allowed_mentions``, ``source`` ("rest", "interaction",
        "followup") and ``ephemeral``; deleted messages are left out.
        """
        out = []
        for mid in sorted(self._meta):
            meta = self._meta[mid]
            msg = self._messages.get(mid)
            if msg is None or meta["deleted"] or msg["channel_id"] != str(channel_id):
                continue
            if meta["ephemeral"] and not include_ephemeral:
                continue
            record = copy.deepcopy(msg)
            record.setdefault("message_reference", None)
            record.setdefault("components", [])
            record.update(allowed_mentions=meta["allowed_mentions"], source=meta["source"],
                          ephemeral=meta["ephemeral"])
            out.append(record)
        return out

    def typing_count(self, channel_id: int) -> int:
        """How many typing indicators the bot triggered in a channel."""
        return self._typing.get(int(channel_id), 0)

    def calls(self, method: str | None = None, path_regex: str | None = None) -> list[RestCall]:
        """Recorded REST calls filtered by method and a fullmatch on the path after /api/v10."""
        pattern = re.compile(path_regex) if path_regex else None
        wanted = method.upper() if method else None
        return [
            c for c in self.requests
            if (wanted is None or c.method == wanted) and (pattern is None or pattern.fullmatch(c.path))
        ]

    @property
    def message_content_intent(self) -> bool:
        """Whether the last IDENTIFY asked for MESSAGE_CONTENT (decides content blanking)."""
        return bool((self.identified_intents or 0) & INTENT_MESSAGE_CONTENT)

    @property
    def connected(self) -> bool:
        """True while every shard (of the count in use) has a live connection that finished READY/RESUMED."""
        return len(self.connected_shards) == self._shard_count

    @property
    def connected_shards(self) -> list[int]:
        """Shard ids with a live, ready connection."""
        return sorted(sid for sid, conn in self._live.items() if conn.ready and not conn.closed)

    def shard_of(self, guild_id: int | None) -> int:
        """The shard a guild's events go to, `(guild_id >> 22) % count` as Discord documents; DMs go to shard 0."""
        return 0 if guild_id is None else (int(guild_id) >> 22) % self._shard_count

    def set_session_start_limit(self, *, total: int = 1000, remaining: int = 999, reset_after: int = 86_400_000,
                                max_concurrency: int = 1) -> None:
        """What GET /gateway/bot reports; `remaining` drops per IDENTIFY and is `total` again after reset_after ms."""
        self._start_limit = {"total": total, "remaining": remaining, "max_concurrency": max_concurrency}
        self._limit_reset_at = time.monotonic() + reset_after / 1000

    @property
    def session_start_limit(self) -> dict[str, int]:
        """The limit as GET /gateway/bot shows it now (reset_after counts down in ms)."""
        now = time.monotonic()
        if now >= self._limit_reset_at:
            self._start_limit["remaining"] = self._start_limit["total"]
            self._limit_reset_at = now + 86_400.0
        return {**self._start_limit, "reset_after": max(0, int((self._limit_reset_at - now) * 1000))}

    def live_connections(self) -> list[_Conn]:
        """Sockets still open, to catch a bot that leaks or duplicates gateway connections."""
        return [c for c in self.connections if not c.closed]

    async def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 5.0, what: str | None = None
    ) -> Any:
        """Poll every 20 ms (and on fake activity) until predicate is truthy; fail with a readable dump."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                label = what or getattr(predicate, "__name__", "predicate")
                raise AssertionError(f"FakeDiscord.wait_for timed out after {timeout}s: {label}\n"
                                     f"{self.dump()}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(0.02, remaining))
            except TimeoutError:
                pass

    async def wait_ready(self, timeout: float = 5.0) -> None:
        """Wait until a connection has IDENTIFYed and received READY plus every GUILD_CREATE."""
        await self.wait_for(lambda: self.connected, timeout=timeout, what="gateway READY + GUILD_CREATE sent")

    def dump(self) -> str:
        """Human-readable state for assertion messages: gateway status, recent REST calls, responses."""
        lines = [
            f"gateway: connected={self.connected} shards={self.connected_shards} of {self._shard_count} "
            f"identify={self.identify_count} resume={self.resume_count} refused_shards={self.refused_shards} "
            f"intents={self.identified_intents} live_sockets={len(self.live_connections())}",
            f"last requests ({len(self.requests)} total):",
        ]
        for call in self.requests[-15:]:
            body = json.dumps(call.json)[:200] if call.json is not None else ""
            lines.append(f"  {call.method} {call.path} -> {call.status} {body}")
        responses = json.dumps(self.interaction_responses[-5:], default=str)[:800]
        lines.append(f"interaction responses: {responses}")
        lines.append(f"last dispatched: {[d['t'] for d in self.dispatched[-10:]]}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ scripted faults

    def rate_limit_next(
        self, method: str, path_regex: str, *, retry_after: float = 0.5, times: int = 1, global_: bool = False
    ) -> None:
        """Answer the next matching request(s) with a 429 discord.py will honour (it needs a Via header)."""
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), 429, times, retry_after, global_))

    def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """Archive (and optionally lock) a thread: posting there answers 400 / 50083 "Thread is archived"."""
        meta = self._channels[int(thread_id)]["thread_metadata"]
        meta.update(archived=True, locked=locked, archive_timestamp=_now_iso())

    def deny_send(self, channel_id: int, code: int = 50013) -> None:
        """Posting in this channel or thread answers 403 with `code` (50013 Missing Permissions, 50001 Missing
        Access), as when the bot's role lost Send Messages there or was removed from a private thread."""
        self.send_denied[int(channel_id)] = code

    def delete_channel(self, channel_id: int) -> None:
        """Delete a channel or thread: later requests to it answer 404 / 10003 Unknown Channel."""
        self._channels.pop(int(channel_id), None)

    def fail_next(self, method: str, path_regex: str, status: int = 500, times: int = 1) -> None:
        """Answer the next matching request(s) with an error; note discord.py retries 5xx after 1 s, 3 s..."""
        self._faults.append(_Fault(method.upper(), re.compile(path_regex), status, times))

    # ------------------------------------------------------------------ gateway: control

    def _target_shard(self, d: Any) -> int:
        """The shard an event belongs to: its guild's, else shard 0 (DMs)."""
        guild_id = d.get("guild_id") if isinstance(d, dict) else None
        return self.shard_of(int(guild_id) if guild_id else None)

    async def dispatch(self, t: str, d: Any, *, shard: int | None = None) -> int:
        """Send an op 0 dispatch with the next seq on the session of its shard (the guild's, or 0 for DMs);
        kept in that session's backlog so a RESUME replays it."""
        shard = self._target_shard(d) if shard is None else shard
        session = self._sessions.get(shard)
        if session is None:
            raise RuntimeError(f"no gateway session for shard {shard} yet: connect the client and await "
                               "fake.wait_ready()")
        return await self._emit(session, t, d)

    async def _dispatch_if_live(self, t: str, d: Any) -> None:
        """Dispatch a consequence of a REST call, when the shard it belongs to has a session (else nobody hears it)."""
        if self._target_shard(d) in self._sessions:
            await self.dispatch(t, d)

    async def send_reconnect(self, *, shard: int = 0) -> None:
        """Send op 7 RECONNECT; the client should come back with op 6 RESUME to resume_gateway_url."""
        conn = self._require_conn(shard)
        await self._send(conn, {"op": 7, "d": None})
        conn.closing = True

    async def invalidate_session(self, *, resumable: bool = False, shard: int = 0) -> None:
        """Send op 9 INVALID_SESSION; with resumable=False the client must IDENTIFY again."""
        conn = self._require_conn(shard)
        if not resumable:
            self._sessions.pop(shard, None)
        await self._send(conn, {"op": 9, "d": resumable})
        conn.closing = True

    async def disconnect(self, code: int = 4000, *, shard: int = 0) -> None:
        """Close a shard's live socket from the server side (4000 is resumable, 4004/4014 are fatal)."""
        conn = self._require_conn(shard)
        conn.closing = True
        await conn.ws.close(code=code, message=b"fake disconnect")

    # ------------------------------------------------------------------ gateway: events

    async def user_message(
        self,
        *,
        channel_id: int,
        author_id: int,
        content: str,
        guild_id: int | None = None,
        mentions_bot: bool = False,
        message_id: int | None = None,
        attachments: list[dict[str, Any]] | None = None,
        author_bot: bool = False,
        msg_type: int = 0,
        mention_everyone: bool = False,
        reply_to: int | None = None,
        embeds: list[dict[str, Any]] | None = None,
        forwarded: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Dispatch a user's MESSAGE_CREATE; without MESSAGE_CONTENT guild content is blanked like Discord.

        ``forwarded`` (``{"content": …, "attachments": […]}``) makes it a forward: a reference of type 1 and
        the forwarded message in ``message_snapshots``, with the forward's own content empty as Discord sends it.
        """
        if guild_id is None and channel_id not in self._channels:
            self.add_channel(None, channel_id, recipient_id=author_id)
        author = self._user_obj(author_id)
        if author_bot:
            author["bot"] = True
        mentions = []
        if mentions_bot:
            mention = self._user_obj(self.bot_id)
            if guild_id is not None:
                mention["member"] = self._member_obj(guild_id, self.bot_id)
            mentions.append(mention)
        mid = message_id or self.new_id()
        ref = None
        if reply_to is not None:
            ref = {"type": 0, "message_id": reply_to, "channel_id": channel_id, "guild_id": guild_id}
            msg_type = 19 if msg_type == 0 else msg_type
        msg = self._new_message(
            mid=mid, channel_id=channel_id, author=author, content=content, msg_type=msg_type,
            mentions=mentions, mention_everyone=mention_everyone, message_reference=ref,
            attachments=[self._attachment_obj(a) for a in attachments or []], embeds=embeds or [],
        )
        if forwarded is not None:
            msg["message_reference"] = {"type": 1, "message_id": str(self.new_id()), "channel_id": str(channel_id)}
            msg["message_snapshots"] = [{"message": {
                "type": 0, "content": forwarded.get("content", ""), "embeds": [], "timestamp": _now_iso(),
                "edited_timestamp": None, "flags": 0, "mentions": [], "mention_roles": [],
                "attachments": [self._attachment_obj(a) for a in forwarded.get("attachments") or []]}}]
        self._messages[mid] = msg
        payload = self._gateway_message(msg, guild_id)
        if guild_id is not None and not mentions_bot and not self.message_content_intent:
            payload.update(content="", embeds=[], attachments=[], components=[])
            for snapshot in payload.get("message_snapshots", []):
                snapshot["message"].update(content="", embeds=[], attachments=[])
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    async def redeliver(self, message_payload: dict[str, Any]) -> int:
        """Send the same MESSAGE_CREATE again (Discord can deliver twice around reconnects)."""
        return await self.dispatch("MESSAGE_CREATE", copy.deepcopy(message_payload))

    async def reaction_add(
        self,
        *,
        user_id: int,
        channel_id: int,
        message_id: int,
        emoji_name: str,
        guild_id: int | None = None,
        emoji_id: int | None = None,
    ) -> dict[str, Any]:
        """Dispatch MESSAGE_REACTION_ADD with ``type``/``burst`` (discord.py KeyErrors without ``type``)."""
        payload = self._reaction_payload(user_id, channel_id, message_id, emoji_name, guild_id, emoji_id)
        if guild_id is not None:
            payload["member"] = self._member_obj(guild_id, user_id, with_user=True)
        author = self._messages.get(message_id, {}).get("author")
        if author is not None:
            payload["message_author_id"] = author["id"]
        await self.dispatch("MESSAGE_REACTION_ADD", payload)
        return payload

    async def reaction_remove(
        self,
        *,
        user_id: int,
        channel_id: int,
        message_id: int,
        emoji_name: str,
        guild_id: int | None = None,
        emoji_id: int | None = None,
    ) -> dict[str, Any]:
        """Dispatch MESSAGE_REACTION_REMOVE (no member object, like the real event)."""
        payload = self._reaction_payload(user_id, channel_id, message_id, emoji_name, guild_id, emoji_id)
        await self.dispatch("MESSAGE_REACTION_REMOVE", payload)
        return payload

    async def slash_command(
        self,
        *,
        name: str,
        options: list[dict[str, Any]] | None = None,
        user_id: int,
        channel_id: int,
        guild_id: int | None = None,
        permissions: int | None = None,
        subcommand: str | None = None,
    ) -> str:
        """Dispatch a type-2 INTERACTION_CREATE; ids match synced commands; returns the interaction id.

        ``subcommand="set"`` nests options under a type-1 option; ``"group set"`` adds a type-2 group.
        ``permissions`` overrides the member's resolved permissions (default: computed from roles).
        """
        data = self._command_data(name, options or [], guild_id, subcommand, focused=None)
        return await self._interaction(2, data, user_id=user_id, channel_id=channel_id, guild_id=guild_id,
                                       permissions=permissions)

    async def autocomplete(
        self,
        *,
        name: str,
        options: list[dict[str, Any]],
        focused: str,
        user_id: int,
        channel_id: int,
        guild_id: int | None = None,
        subcommand: str | None = None,
    ) -> str:
        """Dispatch a type-4 autocomplete INTERACTION_CREATE with ``focused`` set on the named option."""
        data = self._command_data(name, options, guild_id, subcommand, focused=focused)
        return await self._interaction(4, data, user_id=user_id, channel_id=channel_id, guild_id=guild_id)

    async def component_click(
        self,
        *,
        custom_id: str,
        message_id: int,
        channel_id: int,
        user_id: int,
        guild_id: int | None = None,
        component_type: int = 2,
        values: list[str] | None = None,
    ) -> str:
        """Dispatch a type-3 INTERACTION_CREATE for a button (or select with ``values``) on a message."""
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component_type}
        if values is not None:
            data["values"] = values
        message = self._messages.get(message_id)
        if message is None:
            bot = self._user_obj(self.bot_id)
            message = self._new_message(mid=message_id, channel_id=channel_id, author=bot, content="")
        return await self._interaction(3, data, user_id=user_id, channel_id=channel_id, guild_id=guild_id,
                                       message=copy.deepcopy(message))

    # ------------------------------------------------------------------ payload builders

    def _member_record(self, role_ids: list[int], *, nick: str | None = None) -> dict[str, Any]:
        """Member fields discord.py requires (``roles`` and ``flags`` are read with [])."""
        return {
            "roles": [str(r) for r in role_ids],
            "nick": nick,
            "avatar": None,
            "banner": None,
            "joined_at": _now_iso(),
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }

    def _user_obj(self, user_id: int | None) -> dict[str, Any]:
        """User object from the world, or a plausible stand-in for unknown authors."""
        if user_id is None:
            raise ValueError("user id required")
        user = self._users.get(user_id)
        if user is None:
            user = {"id": str(user_id), "username": f"user{user_id}", "global_name": None,
                    "discriminator": "0", "avatar": None, "public_flags": 0}
        return copy.deepcopy(user)

    def _member_obj(self, guild_id: int, user_id: int, *, with_user: bool = False) -> dict[str, Any]:
        """Member object (without ``user`` inside messages, with it elsewhere) for a guild user."""
        member = copy.deepcopy(self._members.get((guild_id, user_id)) or self._member_record([]))
        if with_user:
            member["user"] = self._user_obj(user_id)
        return member

    def _permissions_of(self, guild_id: int, user_id: int) -> int:
        """Resolved guild permissions the way Discord puts them into interaction ``member.permissions``."""
        guild = self._guilds.get(guild_id)
        if guild is None:
            return 0
        if guild["owner_id"] == str(user_id):
            return ALL_PERMISSIONS
        member = self._members.get((guild_id, user_id), {"roles": []})
        perms = int(guild["roles"].get(guild_id, {}).get("permissions", "0"))
        for role_id in member["roles"]:
            perms |= int(guild["roles"].get(int(role_id), {}).get("permissions", "0"))
        return ALL_PERMISSIONS if perms & ADMINISTRATOR else perms

    def _guild_of(self, channel_id: int) -> int | None:
        """Guild that owns a channel, or None for DMs and unknown channels."""
        channel = self._channels.get(channel_id)
        if channel is None or channel.get("guild_id") is None:
            return None
        return int(channel["guild_id"])

    def _thread_obj(
        self, guild_id: int, parent_id: int, thread_id: int, name: str, type_: int, owner_id: int,
        auto_archive_duration: int = 1440,
    ) -> dict[str, Any]:
        """Thread channel with the metadata discord.py's Thread reads with []."""
        now = _now_iso()
        return {
            "id": str(thread_id),
            "type": type_,
            "guild_id": str(guild_id),
            "parent_id": str(parent_id),
            "owner_id": str(owner_id),
            "name": name,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "message_count": 0,
            "member_count": 1,
            "total_message_sent": 0,
            "flags": 0,
            "applied_tags": [],
            "thread_metadata": {
                "archived": False,
                "auto_archive_duration": auto_archive_duration,
                "archive_timestamp": now,
                "locked": False,
                "invitable": True,
                "create_timestamp": now,
            },
            "member": {"id": str(thread_id), "user_id": str(self.bot_id), "join_timestamp": now, "flags": 0},
        }

    def _attachment_obj(self, given: dict[str, Any]) -> dict[str, Any]:
        """Fill an attachment's required keys so tests can pass just a filename."""
        aid = int(given.get("id") or self.new_id())
        filename = given.get("filename", "file.bin")
        url = f"http://127.0.0.1:{self._port or 0}/attachments/{aid}/{filename}"
        out = {"id": str(aid), "filename": filename, "size": given.get("size", 0), "url": url,
               "proxy_url": url, "content_type": given.get("content_type")}
        out.update({k: v for k, v in given.items() if k not in out})
        return out

    def _new_message(
        self,
        *,
        mid: int,
        channel_id: int,
        author: dict[str, Any],
        content: str,
        msg_type: int = 0,
        mentions: list[dict[str, Any]] | None = None,
        mention_everyone: bool = False,
        message_reference: dict[str, Any] | None = None,
        attachments: list[dict[str, Any]] | None = None,
        embeds: list[dict[str, Any]] | None = None,
        components: list[dict[str, Any]] | None = None,
        flags: int = 0,
        tts: bool = False,
        nonce: Any = None,
    ) -> dict[str, Any]:
        """Message object with every key discord.py's Message reads with []."""
        msg: dict[str, Any] = {
            "id": str(mid),
            "channel_id": str(channel_id),
            "author": author,
            "content": content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": tts,
            "mention_everyone": mention_everyone,
            "mentions": mentions or [],
            "mention_roles": [],
            "attachments": attachments or [],
            "embeds": embeds or [],
            "components": components or [],
            "pinned": False,
            "type": msg_type,
            "flags": flags,
        }
        if nonce is not None:
            msg["nonce"] = nonce
        if message_reference:
            ref = {k: (_sid(v) if k.endswith("_id") else v) for k, v in message_reference.items()}
            ref = {k: v for k, v in ref.items() if v is not None}
            msg["message_reference"] = ref
            target = self._messages.get(int(ref.get("message_id", 0) or 0))
            if target is not None:
                resolved = copy.deepcopy(target)
                resolved.pop("referenced_message", None)
                msg["referenced_message"] = resolved
        return msg

    def _gateway_message(self, msg: dict[str, Any], guild_id: int | None) -> dict[str, Any]:
        """MESSAGE_CREATE/UPDATE shape: the message plus ``guild_id`` and ``member`` in guilds."""
        payload = copy.deepcopy(msg)
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
            if "webhook_id" not in payload:
                payload["member"] = self._member_obj(guild_id, int(msg["author"]["id"]))
        return payload

    def _reaction_payload(
        self, user_id: int, channel_id: int, message_id: int, emoji_name: str, guild_id: int | None,
        emoji_id: int | None,
    ) -> dict[str, Any]:
        """Common reaction event body; ``type`` 0 is a normal (non-burst) reaction."""
        payload: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "emoji": {"id": _sid(emoji_id), "name": emoji_name},
            "burst": False,
            "burst_colors": [],
            "type": 0,
        }
        if guild_id is not None:
            payload["guild_id"] = str(guild_id)
        return payload

    def _channel_payload(self, channel_id: int, guild_id: int | None, user_id: int) -> dict[str, Any]:
        """Interaction ``channel`` object; unknown channels get a minimal text/DM stand-in."""
        channel = self._channels.get(channel_id)
        if channel is not None:
            out = copy.deepcopy(channel)
        elif guild_id is None:
            out = {"id": str(channel_id), "type": 1, "last_message_id": None, "flags": 0,
                   "recipients": [self._user_obj(user_id)]}
        else:
            out = {"id": str(channel_id), "type": 0, "guild_id": str(guild_id), "name": "unknown",
                   "position": 0, "permission_overwrites": [], "nsfw": False, "flags": 0}
        if guild_id is not None:
            out["permissions"] = str(self._permissions_of(guild_id, user_id))
        return out

    def _find_command(self, name: str, guild_id: int | None, type_: int = 1) -> dict[str, Any] | None:
        """Guild-synced command first (Discord prefers guild scope), then global."""
        scopes: list[int | None] = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name and cmd.get("type", 1) == type_:
                    return cmd
        return None

    def _command_data(
        self, name: str, options: list[dict[str, Any]], guild_id: int | None, subcommand: str | None,
        focused: str | None,
    ) -> dict[str, Any]:
        """Build interaction ``data`` with option types taken from the synced definition where possible."""
        cmd = self._find_command(name, guild_id)
        defs = (cmd or {}).get("options", [])
        path = subcommand.split() if subcommand else []
        for part in path:
            defs = next((o.get("options", []) for o in defs if o.get("name") == part), [])
        built = []
        for opt in options:
            definition = next((d for d in defs if d.get("name") == opt["name"]), {})
            item = {"name": opt["name"], "type": opt.get("type") or definition.get("type")
                    or _infer_option_type(opt["value"]), "value": opt["value"]}
            if focused is not None and opt["name"] == focused:
                item["focused"] = True
            built.append(item)
        if len(path) == 2:
            inner = [{"name": path[1], "type": 1, "options": built}]
            built = [{"name": path[0], "type": 2, "options": inner}]
        elif len(path) == 1:
            built = [{"name": path[0], "type": 1, "options": built}]
        data: dict[str, Any] = {"id": cmd["id"] if cmd else str(self.new_id()), "name": name, "type": 1}
        if built:
            data["options"] = built
        if cmd is not None and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        return data

    async def _interaction(
        self,
        type_: int,
        data: dict[str, Any],
        *,
        user_id: int,
        channel_id: int,
        guild_id: int | None,
        permissions: int | None = None,
        message: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Register and dispatch an INTERACTION_CREATE carrying every key discord.py reads with []; `extra`
        replaces top-level keys (user installs: context, authorizing_integration_owners, channel)."""
        iid = self.new_id()
        token = f"fake-interaction-token-{iid}-{uuid.uuid4().hex}"
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": type_,
            "data": data,
            "token": token,
            "version": 1,
            "locale": "en-US",
            "app_permissions": str(ALL_PERMISSIONS),
            "entitlements": [],
            "entitlement_sku_ids": [],
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "channel_id": str(channel_id),
            "channel": self._channel_payload(channel_id, guild_id, user_id),
        }
        if guild_id is not None:
            member = self._member_obj(guild_id, user_id, with_user=True)
            perms = self._permissions_of(guild_id, user_id) if permissions is None else permissions
            member["permissions"] = str(perms)
            payload.update(guild_id=str(guild_id), guild_locale="en-US", member=member, context=0,
                           guild={"id": str(guild_id), "locale": "en-US", "features": []},
                           authorizing_integration_owners={"0": str(guild_id)})
        else:
            payload.update(user=self._user_obj(user_id), context=1,
                           authorizing_integration_owners={"1": str(user_id)})
        if message is not None:
            payload["message"] = message
        payload.update(extra or {})
        self._interactions[iid] = {
            "id": iid, "token": token, "type": type_, "channel_id": channel_id, "guild_id": guild_id,
            "user_id": user_id, "acked": False, "original_id": None,
            "message_id": int(message["id"]) if message else None,
        }
        await self.dispatch("INTERACTION_CREATE", payload)
        return str(iid)

    def _guild_create(self, guild_id: int) -> dict[str, Any]:
        """Full GUILD_CREATE: roles, channels, threads and members as discord.py caches them."""
        guild = self._guilds[guild_id]
        channels, threads = [], []
        for channel in self._channels.values():
            if channel.get("guild_id") != str(guild_id):
                continue
            (threads if channel["type"] in THREAD_TYPES else channels).append(copy.deepcopy(channel))
        members = [self._member_obj(guild_id, uid, with_user=True) for gid, uid in self._members
                   if gid == guild_id]
        return {
            "id": guild["id"], "name": guild["name"], "icon": None, "splash": None, "discovery_splash": None,
            "banner": None, "description": None, "owner_id": guild["owner_id"], "afk_channel_id": None,
            "afk_timeout": 300, "verification_level": 0, "default_message_notifications": 0,
            "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0, "premium_tier": 0,
            "premium_subscription_count": 0, "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None, "vanity_url_code": None,
            "application_id": None, "features": [], "emojis": [], "stickers": [],
            "roles": copy.deepcopy(list(guild["roles"].values())),
            "joined_at": guild["joined_at"], "large": False, "unavailable": False, "lazy": True,
            "member_count": len(members), "members": members, "channels": channels, "threads": threads,
            "voice_states": [], "presences": [], "stage_instances": [], "guild_scheduled_events": [],
            "soundboard_sounds": [], "max_members": 500000, "max_video_channel_users": 25,
        }

    def _app_info(self) -> dict[str, Any]:
        """GET /oauth2/applications/@me body with the keys discord.py's AppInfo reads with []."""
        return {
            "id": str(self.application_id), "name": self.bot_name, "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": {"id": "1", "username": "owner", "global_name": None, "discriminator": "0",
                      "avatar": None, "public_flags": 0},
            "team": None, "flags": self.application_flags, "summary": "", "tags": [], "redirect_uris": [],
            "interactions_endpoint_url": None, "bot": self._user_obj(self.bot_id),
            "approximate_guild_count": len(self._guilds),
        }

    # ------------------------------------------------------------------ gateway: transport

    def _notify(self) -> None:
        """Wake wait_for() promptly after anything changes on the fake's side."""
        self._changed.set()

    def _require_conn(self, shard: int = 0) -> _Conn:
        """A shard's live connection, or a clear error when a test acts before the client connected."""
        conn = self._live.get(shard)
        if conn is None or conn.closed:
            raise RuntimeError(f"no live gateway connection for shard {shard}")
        return conn

    async def _send(self, conn: _Conn, payload: dict[str, Any]) -> None:
        """Write one plain-JSON text frame (discord.py only inflates binary frames)."""
        await self._send_text(conn, json.dumps(payload))

    async def _send_text(self, conn: _Conn, text: str) -> bool:
        """Write a frame, tolerating a socket the client is already closing."""
        if conn.ws.closed:
            return False
        try:
            await conn.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return False
        return True

    async def _emit(self, session: _Session, t: str, d: Any) -> int:
        """Assign the next seq, keep it for RESUME replay, and send it if the session's socket is live."""
        async with self._gw_lock:
            session.seq += 1
            seq = session.seq
            text = json.dumps({"op": 0, "t": t, "s": seq, "d": d})
            session.backlog.append((seq, text))
            del session.backlog[:-2000]
            self.dispatched.append({"t": t, "s": seq, "d": d, "shard": session.shard_id})
            conn = self._live.get(session.shard_id)
            if conn is not None and conn.session is session and not conn.closing:
                await self._send_text(conn, text)
        self._notify()
        return seq

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        """Gateway endpoint: HELLO, then heartbeats, IDENTIFY/RESUME and member requests."""
        ws = web.WebSocketResponse(timeout=2.0, max_msg_size=0, compress=False)
        await ws.prepare(request)
        conn = _Conn(ws=ws, query=dict(request.query))
        self.connections.append(conn)
        self._notify()
        await self._send(conn, {"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval}})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                self.gateway_frames.append(frame)
                await self._on_frame(conn, frame)
        finally:
            conn.closed = True
            conn.close_code = ws.close_code
            for shard, live in list(self._live.items()):
                if live is conn:
                    del self._live[shard]
            self._notify()
        return ws

    async def _close(self, conn: _Conn, code: int, reason: str) -> None:
        """Close with a Discord close code (discord.py maps 4004/4014 to errors)."""
        conn.closing = True
        await conn.ws.close(code=code, message=reason.encode())

    async def _on_frame(self, conn: _Conn, frame: dict[str, Any]) -> None:
        """Route one client frame by opcode."""
        op, d = frame.get("op"), frame.get("d")
        if op == 1:
            self.heartbeat_count += 1
            await self._send(conn, {"op": 11})
        elif op == 2:
            await self._on_identify(conn, d)
        elif op == 6:
            await self._on_resume(conn, d)
        elif op == 8:
            await self._on_request_members(conn, d)
        elif op in (3, 4):
            return
        else:
            await self._close(conn, 4001, "Unknown opcode.")

    def _bad_shard(self, shard: Any) -> bool:
        """[id, count] Discord refuses: not two whole numbers, id outside 0..count-1, or a count other live shards
        do not use."""
        if shard is None:
            return False
        if not (isinstance(shard, list) and len(shard) == 2 and all(isinstance(x, int) for x in shard)):
            return True
        shard_id, count = shard
        if count < 1 or not 0 <= shard_id < count:
            return True
        others = {c.session.shard_count for sid, c in self._live.items()
                  if sid != shard_id and not c.closed and not c.closing and c.session is not None}
        return bool(others - {count})

    def _record_identify(self, shard_id: int) -> None:
        """Count against session_start_limit and note concurrency-window violations."""
        now = time.monotonic()
        limit = self.session_start_limit  # applies a due reset
        if limit["remaining"] <= 0:
            self.over_limit_identifies += 1
        self._start_limit["remaining"] = max(0, limit["remaining"] - 1)
        bucket = shard_id % max(1, limit["max_concurrency"])
        recent = [t for sid, times in self.identify_times.items() for t in times
                  if sid % max(1, limit["max_concurrency"]) == bucket and now - t < self.identify_spacing]
        if recent:
            self.concurrency_violations += 1
        self.identify_times.setdefault(shard_id, []).append(now)

    async def _on_identify(self, conn: _Conn, d: dict[str, Any]) -> None:
        """Check token, shard and intents, then READY and one GUILD_CREATE per guild of that shard."""
        self.identify_count += 1
        if d.get("token") != self.token:
            await self._close(conn, 4004, "Authentication failed.")
            return
        if self._bad_shard(d.get("shard")):
            self.refused_shards.append(d.get("shard"))
            await self._close(conn, 4010, "Invalid shard.")
            return
        intents = int(d.get("intents", 0))
        self.identified_intents = intents
        if self.refuse_privileged_intents and intents & PRIVILEGED_INTENTS:
            await self._close(conn, 4014, "Disallowed intent(s).")
            return
        session = _Session(session_id=uuid.uuid4().hex, intents=intents, shard=d.get("shard"))
        self._record_identify(session.shard_id)
        previous = self._live.get(session.shard_id)
        if previous is not None and previous is not conn:
            previous.closing = True
        self._shard_count = session.shard_count
        self._sessions[session.shard_id] = session
        conn.session = session
        self._live[session.shard_id] = conn
        guilds = [gid for gid in self._guilds if self.shard_of(gid) == session.shard_id]
        ready: dict[str, Any] = {
            "v": 10,
            "user": {**self._user_obj(self.bot_id), "verified": True, "mfa_enabled": False, "flags": 0},
            "guilds": [{"id": str(gid), "unavailable": True} for gid in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.gateway_url,
            "application": {"id": str(self.application_id), "flags": self.application_flags},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        await self._emit(session, "READY", ready)
        for guild_id in guilds:
            await self._emit(session, "GUILD_CREATE", self._guild_create(guild_id))
        conn.ready = True
        self._notify()

    async def _on_resume(self, conn: _Conn, d: dict[str, Any]) -> None:
        """Replay dispatches after the client's seq, then RESUMED; unknown sessions get op 9."""
        if d.get("token") != self.token:
            await self._close(conn, 4004, "Authentication failed.")
            return
        session = next((s for s in self._sessions.values() if s.session_id == d.get("session_id")), None)
        if session is None:
            await self._send(conn, {"op": 9, "d": False})
            return
        self.resume_count += 1
        previous = self._live.get(session.shard_id)
        if previous is not None and previous is not conn:
            previous.closing = True
        conn.session = session
        async with self._gw_lock:
            self._live[session.shard_id] = conn
            last = d.get("seq") or 0
            for seq, text in list(session.backlog):
                if seq > last:
                    await self._send_text(conn, text)
        await self._emit(session, "RESUMED", {"_trace": ["fake-discord"]})
        conn.ready = True
        self._notify()

    async def _on_request_members(self, conn: _Conn, d: dict[str, Any]) -> None:
        """Answer op 8 with one GUILD_MEMBERS_CHUNK so chunking clients finish their startup."""
        guild_id = int(d["guild_id"])
        wanted = {int(u) for u in (d.get("user_ids") or [])}
        query = (d.get("query") or "").lower()
        members = []
        for gid, uid in self._members:
            if gid != guild_id or (wanted and uid not in wanted):
                continue
            member = self._member_obj(gid, uid, with_user=True)
            if query and not member["user"]["username"].lower().startswith(query):
                continue
            members.append(member)
        chunk = {"guild_id": str(guild_id), "members": members, "chunk_index": 0, "chunk_count": 1,
                 "not_found": [], "nonce": d.get("nonce")}
        if conn.session is not None:
            await self._emit(conn.session, "GUILD_MEMBERS_CHUNK", chunk)

    # ------------------------------------------------------------------ REST: plumbing

    def _json(self, data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        """JSON reply with Content-Type exactly application/json (pitfall 1)."""
        all_headers = {**JSON_HEADERS, **(headers or {})}
        return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], _Handler, bool]]:
        """(method, path regex, handler, needs bot auth) — first match wins."""
        table: list[tuple[str, str, _Handler, bool]] = [
            ("GET", r"/users/@me", self._r_me, True),
            ("GET", r"/users/(?P<uid>\d+)", self._r_user, True),
            ("POST", r"/users/@me/channels", self._r_create_dm, True),
            ("GET", r"/oauth2/applications/@me", self._r_app_info, True),
            ("GET", r"/applications/@me", self._r_app_info, True),
            ("GET", r"/gateway", self._r_gateway, False),
            ("GET", r"/gateway/bot", self._r_gateway_bot, True),
            ("GET", r"/channels/(?P<cid>\d+)", self._r_get_channel, True),
            ("PATCH", r"/channels/(?P<cid>\d+)", self._r_edit_channel, True),
            ("POST", r"/channels/(?P<cid>\d+)/messages", self._r_post_message, True),
            ("GET", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_get_message, True),
            ("PATCH", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_edit_message, True),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)", self._r_delete_message, True),
            ("POST", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/threads", self._r_thread_from_message,
             True),
            ("POST", r"/channels/(?P<cid>\d+)/threads", self._r_thread_without_message, True),
            ("POST", r"/channels/(?P<cid>\d+)/typing", self._r_typing, True),
            ("PUT", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/reactions/(?P<emoji>[^/]+)/@me",
             self._r_reaction, True),
            ("DELETE", r"/channels/(?P<cid>\d+)/messages/(?P<mid>\d+)/reactions/(?P<emoji>[^/]+)/@me",
             self._r_reaction, True),
            ("GET", r"/guilds/(?P<gid>\d+)", self._r_get_guild, True),
            ("GET", r"/guilds/(?P<gid>\d+)/members/(?P<uid>\d+)", self._r_get_member, True),
            ("GET", r"/applications/(?P<app>\d+)/commands", self._r_get_commands, True),
            ("PUT", r"/applications/(?P<app>\d+)/commands", self._r_put_commands, True),
            ("POST", r"/applications/(?P<app>\d+)/commands", self._r_post_command, True),
            ("GET", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", self._r_get_commands, True),
            ("PUT", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", self._r_put_commands, True),
            ("POST", r"/applications/(?P<app>\d+)/guilds/(?P<gid>\d+)/commands", self._r_post_command, True),
            ("POST", r"/interactions/(?P<iid>\d+)/(?P<token>[^/]+)/callback", self._r_callback, False),
            ("POST", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)", self._r_followup, False),
            ("GET", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)",
             self._r_webhook_message, False),
            ("PATCH", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)",
             self._r_webhook_message, False),
            ("DELETE", r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)/messages/(?P<mid>@original|\d+)",
             self._r_webhook_message, False),
        ]
        return [(m, re.compile(p), h, a) for m, p, h, a in table]

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        """JSON body, or ``payload_json`` plus file summaries for multipart uploads."""
        if request.content_type.startswith("multipart/"):
            payload: Any = None
            files: list[dict[str, Any]] = []
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    continue
                raw = await part.read()
                if part.name == "payload_json":
                    payload = json.loads(raw)
                else:
                    files.append({"field": part.name, "filename": part.filename, "size": len(raw),
                                  "content_type": part.headers.get("Content-Type")})
            return payload, files
        raw = await request.read()
        if not raw:
            return None, []
        try:
            return json.loads(raw), []
        except ValueError:
            return raw.decode("utf-8", "replace"), []

    def _fault_response(self, call: RestCall) -> web.Response | None:
        """Consume a scripted fault matching this request, if any."""
        for fault in self._faults:
            if fault.times <= 0 or fault.method != call.method or not fault.pattern.fullmatch(call.path):
                continue
            fault.times -= 1
            if fault.status != 429:
                return self._json({"message": f"{fault.status}: scripted failure", "code": 0}, fault.status)
            reset_after = f"{fault.retry_after:.3f}"
            headers = {
                "Via": "1.1 google",
                "Retry-After": str(max(1, int(fault.retry_after + 0.999))),
                "X-RateLimit-Limit": "5",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                "X-RateLimit-Reset-After": reset_after,
                "X-RateLimit-Bucket": "fake" + re.sub(r"\W", "", fault.pattern.pattern)[:24],
                "X-RateLimit-Scope": "global" if fault.global_ else "user",
            }
            if fault.global_:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": fault.retry_after,
                    "global": fault.global_}
            return self._json(body, 429, headers)
        self._faults = [f for f in self._faults if f.times > 0]
        return None

    async def _unversioned(self, request: web.Request) -> web.Response:
        """Anything outside /api/v10 is a misconfigured base URL; make that loud."""
        body, files = await self._read_body(request)
        call = RestCall(request.method, request.path, body, dict(request.headers), time.monotonic(),
                        dict(request.query), files=files)
        self.requests.append(call)
        resp = self._json({"message": "Unknown", "code": 0, "fake_route_missing": f"{request.method} "
                           f"{request.path} (is Route.BASE missing /api/v10?)"}, 404)
        call.status = resp.status
        self._notify()
        return resp

    async def _rest(self, request: web.Request) -> web.Response:
        """Record, apply faults and auth, then route; unknown routes are 404 so gaps show up in tests."""
        path = request.path[len("/api/v10"):] or "/"
        body, files = await self._read_body(request)
        call = RestCall(request.method, path, body, dict(request.headers), time.monotonic(),
                        dict(request.query), files=files)
        self.requests.append(call)
        try:
            resp = self._fault_response(call)
            if resp is None:
                resp = await self._route(call)
        except _HttpError as err:
            resp = self._json({"message": err.message, "code": err.code}, err.status)
        call.status = resp.status
        self._notify()
        return resp

    async def _route(self, call: RestCall) -> web.Response:
        """Find the handler for a recorded call and enforce ``Authorization: Bot <token>``."""
        for method, pattern, handler, needs_auth in self._routes:
            match = pattern.fullmatch(call.path)
            if method != call.method or match is None:
                continue
            auth = next((v for k, v in call.headers.items() if k.lower() == "authorization"), None)
            if needs_auth and auth != f"Bot {self.token}":
                raise _HttpError(401, "401: Unauthorized", 0)
            return await handler(call, **match.groupdict())
        missing = f"{call.method} {call.path}"
        return self._json({"message": "Unknown", "code": 0, "fake_route_missing": missing}, 404)

    def _channel_or_404(self, cid: int) -> dict[str, Any]:
        """Known channel, or Discord's Unknown Channel error."""
        channel = self._channels.get(cid)
        if channel is None:
            raise _HttpError(404, "Unknown Channel", 10003)
        return channel

    def _store_bot_message(
        self, channel_id: int, body: dict[str, Any], files: list[dict[str, Any]], *, source: str,
        msg_type: int | None = None, flags: int | None = None, webhook: bool = False,
    ) -> dict[str, Any]:
        """Create and remember a message the bot sent, keeping what it asked for (components, mentions)."""
        body = body or {}
        ref = body.get("message_reference")
        attachments = [self._attachment_obj({"filename": f["filename"], "size": f["size"],
                                             "content_type": f["content_type"]}) for f in files]
        if msg_type is None:
            msg_type = 19 if ref else 0
        msg = self._new_message(
            mid=self.new_id(), channel_id=channel_id, author=self._user_obj(self.bot_id),
            content=body.get("content") or "", msg_type=msg_type,
            message_reference=ref, attachments=attachments, embeds=body.get("embeds") or [],
            components=body.get("components") or [], flags=body.get("flags", 0) if flags is None else flags,
            tts=bool(body.get("tts")), nonce=body.get("nonce"),
        )
        if webhook:
            msg["webhook_id"] = str(self.application_id)
            msg["application_id"] = str(self.application_id)
        mid = int(msg["id"])
        self._messages[mid] = msg
        self._meta[mid] = {"allowed_mentions": body.get("allowed_mentions"), "source": source,
                           "ephemeral": bool(msg["flags"] & EPHEMERAL_FLAG), "deleted": False}
        channel = self._channels.get(channel_id)
        if channel is not None:
            channel["last_message_id"] = msg["id"]
        return msg

    async def _echo(self, t: str, msg: dict[str, Any]) -> None:
        """Real Discord echoes the bot's own messages over the gateway; so do we (unless ephemeral)."""
        if self.echo_own_events and not msg["flags"] & EPHEMERAL_FLAG:
            await self._dispatch_if_live(t, self._gateway_message(msg, self._guild_of(int(msg["channel_id"]))))

    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any]) -> None:
        """Apply a PATCH body to a stored message the way Discord does (only sent fields change)."""
        for key in ("content", "embeds", "components", "flags", "attachments"):
            if key in body and body[key] is not None:
                msg[key] = body[key]
        msg["edited_timestamp"] = _now_iso()
        meta = self._meta.get(int(msg["id"]))
        if meta is not None and "allowed_mentions" in body:
            meta["allowed_mentions"] = body["allowed_mentions"]

    # ------------------------------------------------------------------ REST: handlers

    async def _r_me(self, call: RestCall) -> web.Response:
        """Login identity; discord.py builds ClientUser from it."""
        return self._json({**self._user_obj(self.bot_id), "verified": True, "mfa_enabled": False, "flags": 0,
                           "locale": "en-US", "email": None, "bio": ""})

    async def _r_user(self, call: RestCall, uid: str) -> web.Response:
        """fetch_user(); unknown users are still answered so DMs to synthetic authors work."""
        return self._json(self._user_obj(int(uid)))

    async def _r_app_info(self, call: RestCall) -> web.Response:
        """Required at login (Client.login calls application_info())."""
        return self._json(self._app_info())

    async def _r_gateway(self, call: RestCall) -> web.Response:
        """URL without trailing slash, as Discord returns it; both forms are routed."""
        return self._json({"url": self.gateway_url.rstrip("/")})

    async def _r_gateway_bot(self, call: RestCall) -> web.Response:
        """Used by AutoShardedClient to pick the shard count and URL; the limits come from set_session_start_limit."""
        return self._json({"url": self.gateway_url.rstrip("/"), "shards": self.recommended_shards,
                           "session_start_limit": self.session_start_limit})

    async def _r_create_dm(self, call: RestCall) -> web.Response:
        """Open (or reuse) the DM channel with a user."""
        recipient = int((call.json or {})["recipient_id"])
        for channel in self._channels.values():
            if channel["type"] == 1 and any(r["id"] == str(recipient) for r in channel["recipients"]):
                return self._json(copy.deepcopy(channel))
        channel = self.add_channel(None, self.new_id(), recipient_id=recipient)
        return self._json(copy.deepcopy(channel))

    async def _r_get_channel(self, call: RestCall, cid: str) -> web.Response:
        """fetch_channel()."""
        return self._json(copy.deepcopy(self._channel_or_404(int(cid))))

    async def _r_edit_channel(self, call: RestCall, cid: str) -> web.Response:
        """Modify a channel; for threads only archived/locked, with Discord's rule: anyone who may send there can
        unarchive a thread, a locked one needs MANAGE_THREADS. Dispatches THREAD_UPDATE."""
        channel = self._channel_or_404(int(cid))
        body = call.json or {}
        meta = channel.get("thread_metadata")
        if meta is None:
            raise _HttpError(403, "Missing Permissions", 50013)
        if int(cid) in self.send_denied:
            raise _HttpError(403, "Missing Access", self.send_denied[int(cid)])
        if (meta["locked"] or body.get("locked")) and not self.bot_manages_threads:
            raise _HttpError(403, "Missing Permissions", 50013)
        try:
            self._edit_applied_tags(channel, body)
        except TagError as err:
            raise _HttpError(err.status, err.message, err.code) from None
        for key in ("archived", "locked"):
            if key in body:
                meta[key] = bool(body[key])
        await self._dispatch_if_live("THREAD_UPDATE", copy.deepcopy(channel))
        return self._json(copy.deepcopy(channel))

    async def _r_get_guild(self, call: RestCall, gid: str) -> web.Response:
        """fetch_guild(): the GUILD_CREATE shape minus gateway-only lists."""
        if int(gid) not in self._guilds:
            raise _HttpError(404, "Unknown Guild", 10004)
        guild = self._guild_create(int(gid))
        for key in ("members", "channels", "threads", "voice_states", "presences", "joined_at", "large"):
            guild.pop(key, None)
        return self._json(guild)

    async def _r_get_member(self, call: RestCall, gid: str, uid: str) -> web.Response:
        """fetch_member()."""
        if (int(gid), int(uid)) not in self._members:
            raise _HttpError(404, "Unknown Member", 10007)
        return self._json(self._member_obj(int(gid), int(uid), with_user=True))

    async def _r_post_message(self, call: RestCall, cid: str) -> web.Response:
        """Send a message: store it, echo MESSAGE_CREATE, return the full object."""
        channel_id = int(cid)
        target = self._channel_or_404(channel_id)
        if channel_id in self.send_denied:
            code = self.send_denied[channel_id]
            raise _HttpError(403, "Missing Access" if code == 50001 else "Missing Permissions", code)
        if (target.get("thread_metadata") or {}).get("archived"):
            raise _HttpError(400, "Thread is archived", 50083)
        if target["type"] in (4, 15, 16):
            raise _HttpError(400, "Cannot send messages in a non-text channel", 50008)
        body = call.json or {}
        sendable = ("content", "embeds", "components", "sticker_ids", "poll")
        if not any(body.get(k) for k in sendable) and not call.files:
            raise _HttpError(400, "Cannot send an empty message", 50006)
        msg = self._store_bot_message(channel_id, body, call.files, source="rest")
        channel = self._channels[channel_id]
        if channel["type"] in THREAD_TYPES:
            channel["message_count"] = channel.get("message_count", 0) + 1
        await self._echo("MESSAGE_CREATE", msg)
        return self._json(copy.deepcopy(msg))

    async def _r_get_message(self, call: RestCall, cid: str, mid: str) -> web.Response:
        """fetch_message()."""
        msg = self._messages.get(int(mid))
        if msg is None or msg["channel_id"] != cid or self._meta.get(int(mid), {}).get("deleted"):
            raise _HttpError(404, "Unknown Message", 10008)
        return self._json(copy.deepcopy(msg))

    async def _r_edit_message(self, call: RestCall, cid: str, mid: str) -> web.Response:
        """Edit one of the bot's messages and dispatch MESSAGE_UPDATE."""
        msg = self._messages.get(int(mid))
        if msg is None or msg["channel_id"] != cid or self._meta.get(int(mid), {}).get("deleted"):
            raise _HttpError(404, "Unknown Message", 10008)
        if msg["author"]["id"] != str(self.bot_id):
            raise _HttpError(403, "Cannot edit a message authored by another user", 50005)
        self._apply_edit(msg, call.json or {})
        await self._echo("MESSAGE_UPDATE", msg)
        return self._json(copy.deepcopy(msg))

    async def _r_delete_message(self, call: RestCall, cid: str, mid: str) -> web.Response:
        """Delete a message and dispatch MESSAGE_DELETE."""
        msg = self._messages.get(int(mid))
        if msg is None or msg["channel_id"] != cid:
            raise _HttpError(404, "Unknown Message", 10008)
        meta = self._meta.setdefault(
            int(mid), {"allowed_mentions": None, "source": "user", "ephemeral": False, "deleted": False}
        )
        meta["deleted"] = True
        event = {"id": mid, "channel_id": cid}
        guild_id = self._guild_of(int(cid))
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
        await self._dispatch_if_live("MESSAGE_DELETE", event)
        return web.Response(status=204)

    async def _new_thread(self, parent: dict[str, Any], thread_id: int, name: str, type_: int,
                          auto_archive: int) -> dict[str, Any]:
        """Register a thread the bot created and dispatch THREAD_CREATE like Discord."""
        guild_id = int(parent["guild_id"])
        thread = self._thread_obj(guild_id, int(parent["id"]), thread_id, name, type_, self.bot_id,
                                  auto_archive)
        self._channels[thread_id] = thread
        await self._dispatch_if_live("THREAD_CREATE", {**copy.deepcopy(thread), "newly_created": True})
        return thread

    async def _r_thread_from_message(self, call: RestCall, cid: str, mid: str) -> web.Response:
        """Start a thread on a message: 201, type 11 (10 under news), thread id == message id."""
        parent = self._channel_or_404(int(cid))
        if parent.get("guild_id") is None or parent["type"] not in (0, 5):
            raise _HttpError(400, "Cannot execute action on this channel type", 50024)
        if int(mid) in self._channels:
            raise _HttpError(400, "A thread has already been created for this message", 160004)
        body = call.json or {}
        type_ = 10 if parent["type"] == 5 else 11
        thread = await self._new_thread(parent, int(mid), body.get("name", "thread"), type_,
                                        body.get("auto_archive_duration") or 1440)
        starter = self._messages.get(int(mid))
        if starter is not None:
            starter["thread"] = copy.deepcopy(thread)
        return self._json(copy.deepcopy(thread), 201)

    async def _r_thread_without_message(self, call: RestCall, cid: str) -> web.Response:
        """Start a thread without a message; in a forum this also posts the starter message."""
        parent = self._channel_or_404(int(cid))
        if parent.get("guild_id") is None:
            raise _HttpError(400, "Cannot execute action on this channel type", 50024)
        body = call.json or {}
        thread_id = self.new_id()
        if parent["type"] in (15, 16):
            thread = await self._new_thread(parent, thread_id, body.get("name", "post"), 11,
                                            body.get("auto_archive_duration") or 1440)
            thread["applied_tags"] = [str(t) for t in body.get("applied_tags") or []]
            msg = self._store_bot_message(thread_id, body.get("message") or {}, call.files, source="rest")
            self._messages.pop(int(msg["id"]))
            meta = self._meta.pop(int(msg["id"]))
            msg["id"] = str(thread_id)
            self._messages[thread_id] = msg
            self._meta[thread_id] = meta
            thread["last_message_id"] = msg["id"]
            thread["message_count"] = 1
            await self._echo("MESSAGE_CREATE", msg)
            return self._json({**copy.deepcopy(thread), "message": copy.deepcopy(msg)}, 201)
        archive = body.get("auto_archive_duration") or 1440
        thread = await self._new_thread(parent, thread_id, body.get("name", "thread"),
                                        int(body.get("type") or 11), archive)
        return self._json(copy.deepcopy(thread), 201)

    async def _r_typing(self, call: RestCall, cid: str) -> web.Response:
        """Typing indicator: counted per channel, 204 like Discord."""
        self._channel_or_404(int(cid))
        self._typing[int(cid)] = self._typing.get(int(cid), 0) + 1
        return web.Response(status=204)

    async def _r_reaction(self, call: RestCall, cid: str, mid: str, emoji: str) -> web.Response:
        """Bot adds/removes its own reaction; recorded, and echoed as a reaction event like Discord."""
        self._channel_or_404(int(cid))
        added = call.method == "PUT"
        self.bot_reactions.append({"channel_id": int(cid), "message_id": int(mid), "emoji": emoji,
                                   "added": added})
        if self.echo_own_events:
            name, _, eid = emoji.partition(":")
            guild_id = self._guild_of(int(cid))
            payload = self._reaction_payload(self.bot_id, int(cid), int(mid), name, guild_id,
                                             int(eid) if eid.isdigit() else None)
            if added and guild_id is not None:
                payload["member"] = self._member_obj(guild_id, self.bot_id, with_user=True)
            await self._dispatch_if_live("MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE", payload)
        return web.Response(status=204)

    def _check_app(self, app: str) -> None:
        """Catch a wrong DISCORD_APPLICATION_ID early instead of silently accepting it."""
        if int(app) != self.application_id:
            raise _HttpError(404, "Unknown Application", 10002)

    def _command_obj(self, app: str, gid: str | None, given: dict[str, Any]) -> dict[str, Any]:
        """Stored command: stable id per (scope, name, type), as a bulk overwrite keeps ids."""
        scope = int(gid) if gid else None
        type_ = int(given.get("type", 1))
        key = (scope, given["name"], type_)
        cid = self._command_ids.setdefault(key, self.new_id())
        cmd = {
            "id": str(cid), "application_id": str(app), "version": str(self.new_id()), "type": type_,
            "name": given["name"], "description": given.get("description", ""),
            "options": given.get("options", []),
            "default_member_permissions": given.get("default_member_permissions"),
            "dm_permission": given.get("dm_permission", True), "nsfw": given.get("nsfw", False),
            "contexts": given.get("contexts"), "integration_types": given.get("integration_types", [0]),
            "name_localizations": given.get("name_localizations"),
            "description_localizations": given.get("description_localizations"),
        }
        if scope is not None:
            cmd["guild_id"] = str(scope)
        return cmd

    async def _r_get_commands(self, call: RestCall, app: str, gid: str | None = None) -> web.Response:
        """List synced commands for a scope."""
        self._check_app(app)
        return self._json(copy.deepcopy(self.commands.get(int(gid) if gid else None, [])))

    async def _r_put_commands(self, call: RestCall, app: str, gid: str | None = None) -> web.Response:
        """Bulk overwrite (tree.sync()): replace the scope's commands, return them with ids."""
        self._check_app(app)
        if gid is not None and int(gid) not in self._guilds:
            raise _HttpError(403, "Missing Access", 50001)
        cmds = [self._command_obj(app, gid, c) for c in call.json or []]
        self.commands[int(gid) if gid else None] = cmds
        return self._json(copy.deepcopy(cmds))

    async def _r_post_command(self, call: RestCall, app: str, gid: str | None = None) -> web.Response:
        """Upsert one command."""
        self._check_app(app)
        cmd = self._command_obj(app, gid, call.json or {})
        scope = self.commands.setdefault(int(gid) if gid else None, [])
        scope[:] = [c for c in scope if c["id"] != cmd["id"]] + [cmd]
        return self._json(copy.deepcopy(cmd), 201)

    def _interaction_by_token(self, token: str) -> dict[str, Any] | None:
        """Follow-ups and @original edits are addressed by interaction token."""
        return next((i for i in self._interactions.values() if i["token"] == token), None)

    async def _r_callback(self, call: RestCall, iid: str, token: str) -> web.Response:
        """Initial interaction response; answers 200 JSON (with_response) so send_message() works."""
        inter = self._interactions.get(int(iid))
        if inter is None or inter["token"] != token:
            raise _HttpError(404, "Unknown interaction", 10062)
        if inter["acked"]:
            raise _HttpError(400, "Interaction has already been acknowledged.", 40060)
        body = call.json or {}
        rtype = int(body.get("type", 0))
        data = body.get("data") or {}
        ephemeral = bool(int(data.get("flags") or 0) & EPHEMERAL_FLAG)
        inter["acked"] = True
        record: dict[str, Any] = {"interaction_id": iid, "token": token, "type": rtype, "data": data,
                                  "ephemeral": ephemeral, "at": time.monotonic(), "message_id": None}
        self.interaction_responses.append(record)
        msg: dict[str, Any] | None = None
        channel_id = inter["channel_id"]
        if rtype in (4, 5):
            flags = int(data.get("flags") or 0) | (LOADING_FLAG if rtype == 5 else 0)
            msg = self._store_bot_message(channel_id, data, call.files, source="interaction",
                                          msg_type=20 if inter["type"] == 2 else 0, flags=flags, webhook=True)
            msg["interaction_metadata"] = {"id": iid, "type": inter["type"],
                                           "user": self._user_obj(inter["user_id"]),
                                           "authorizing_integration_owners": {}}
            inter["original_id"] = int(msg["id"])
            await self._echo("MESSAGE_CREATE", msg)
        elif rtype in (6, 7) and inter["message_id"] is not None:
            msg = self._messages.get(inter["message_id"])
            if msg is not None and rtype == 7:
                self._apply_edit(msg, data)
                await self._echo("MESSAGE_UPDATE", msg)
        record["message_id"] = msg["id"] if msg is not None else None
        resource: dict[str, Any] = {"type": rtype}
        if msg is not None:
            resource["message"] = copy.deepcopy(msg)
        return self._json({
            "interaction": {"id": iid, "type": inter["type"], "activity_instance_id": None,
                            "response_message_id": msg["id"] if msg is not None else None,
                            "response_message_loading": rtype == 5, "response_message_ephemeral": ephemeral},
            "resource": resource,
        })

    async def _r_followup(self, call: RestCall, app: str, token: str) -> web.Response:
        """Follow-up message (interaction.followup.send); needs the interaction acknowledged first."""
        inter = self._interaction_by_token(token)
        if inter is None or int(app) != self.application_id or not inter["acked"]:
            raise _HttpError(404, "Unknown Webhook", 10015)
        body = call.json or {}
        msg = self._store_bot_message(inter["channel_id"], body, call.files, source="followup", webhook=True)
        self.followups.append({"interaction_id": str(inter["id"]), "token": token, "data": body,
                               "ephemeral": bool(msg["flags"] & EPHEMERAL_FLAG), "message_id": msg["id"],
                               "at": time.monotonic()})
        await self._echo("MESSAGE_CREATE", msg)
        if call.query.get("wait", "").lower() in ("1", "true"):
            return self._json(copy.deepcopy(msg))
        return web.Response(status=204)

    async def _r_webhook_message(self, call: RestCall, app: str, token: str, mid: str) -> web.Response:
        """GET/PATCH/DELETE of @original or a follow-up message."""
        inter = self._interaction_by_token(token)
        if inter is None or int(app) != self.application_id:
            raise _HttpError(404, "Unknown Webhook", 10015)
        message_id = inter["original_id"] if mid == "@original" else int(mid)
        msg = self._messages.get(message_id) if message_id is not None else None
        if msg is None or self._meta.get(message_id, {}).get("deleted"):
            raise _HttpError(404, "Unknown Message", 10008)
        if call.method == "GET":
            return self._json(copy.deepcopy(msg))
        if call.method == "DELETE":
            self._meta[message_id]["deleted"] = True
            return web.Response(status=204)
        body = call.json or {}
        self._apply_edit(msg, body)
        msg["flags"] = int(msg.get("flags") or 0) & ~LOADING_FLAG
        self.webhook_edits.append({"interaction_id": str(inter["id"]), "token": token,
                                   "message_id": msg["id"], "original": mid == "@original", "data": body,
                                   "at": time.monotonic()})
        await self._echo("MESSAGE_UPDATE", msg)
        return self._json(copy.deepcopy(msg))
