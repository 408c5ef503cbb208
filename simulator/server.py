"""The Uppzy M2M chat API on aiohttp: same paths, fields and status codes as the docs, with fault knobs."""

from __future__ import annotations

import asyncio
import json
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiohttp import web

from simulator.keys import key_fingerprint
from simulator.knowledge import KnowledgeBase, Reply

__all__ = ["Fault", "RecordedRequest", "Simulator", "SimulatorConfig"]

MAX_MESSAGE_CHARS = 10_000
SHUTDOWN_GRACE = 0.25  # seconds stop() lets in-flight requests finish (twice: wait, then cancel and wait)
_BODY = web.RequestKey("json", object)  # the parsed JSON body, read once by the middleware


@dataclass(slots=True)
class SimulatorConfig:
    """Knobs: identity, answer latency, and the share of calls that fail in each way."""

    api_key: str = "sim-key"
    sites: tuple[str, ...] = ("demo-site",)
    tenant_id: str = "demo-tenant"
    latency: tuple[float, float] = (0.6, 2.0)  # seconds until an answer is ready, uniform(min, max)
    seed: int | None = None
    error_rate: float = 0.0  # share of calls answered 500/503
    rate_limit_rate: float = 0.0  # share of calls answered 429
    retry_after: float | None = 1.0  # Retry-After on injected 429s (None: header omitted)
    stall_rate: float = 0.0  # share of calls that hang for stall_seconds first
    stall_seconds: float = 30.0
    fail_rate: float = 0.0  # share of async requests that end with status "failed"
    forbidden: bool = False  # the key is valid but the plan lacks M2M: every call gets 403
    fault_endpoints: frozenset[str] | None = None  # None: random faults may hit every endpoint
    # A hidden limit: status calls above this many in any one-second window (sliding; only answered calls count)
    # are answered 429 with Retry-After (whole seconds until the window has room). None: no limit.
    status_rate_limit: float | None = None
    # Extra API keys (several workspaces, each with its own Uppzy key): key -> the site ids it may use. `api_key`
    # keeps `sites`. A known key on a site it is not bound to gets 404 "site not found" (the docs' 404 covers a site
    # "not found in scope"); an unknown key 401 as always.
    keys: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(slots=True)
class Fault:
    """A scripted fault for the next matching calls: a status (with Retry-After) or a stall."""

    endpoint: str
    status: int | None = None
    retry_after: str | None = None
    stall: float = 0.0
    times: int = 1


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the simulator saw it, for tests to assert on (never the key itself)."""

    method: str
    path: str
    endpoint: str
    status: int
    body: Any
    query: dict[str, str]
    at: float
    key_id: str | None = None  # key_fingerprint() of the X-API-Key sent (None: no header), never the key itself


@dataclass(slots=True)
class _Session:
    id: str
    site: str
    created_at: str
    updated_at: str
    email: str | None = None
    closed_at: str | None = None
    message_count: int = 0


@dataclass(slots=True)
class _Request:
    id: str
    site: str
    session_id: str
    question: str
    ready_at: float
    reply: Reply
    fail: bool
    feedback: str | None = None
    feedback_at: str | None = None
    polls: int = 0
    ready_seen_at: float | None = None
    submitted_at: float = 0.0  # monotonic: when the question arrived (benchmarks split mention → answer)


@dataclass(slots=True)
class _Script:
    contains: str
    answer: str | None
    fail: bool
    latency: float | None
    score: int | None
    level: str | None


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload), content_type="application/json",
                        headers=headers)


class Simulator:
    """In-process Uppzy: `await sim.start()` then point UppzyClient at `sim.base_url`."""

    def __init__(self, config: SimulatorConfig | None = None, *, knowledge: KnowledgeBase | None = None) -> None:
        self.config = config or SimulatorConfig()
        self.knowledge = knowledge or KnowledgeBase()
        self.rng = random.Random(self.config.seed)
        self.requests: list[RecordedRequest] = []
        self.faults: deque[Fault] = deque()
        self.sessions: dict[tuple[str, str], _Session] = {}
        self.chats: dict[str, _Request] = {}
        self._scripts: list[_Script] = []
        self._status_window: deque[float] = deque()  # when the status calls of the last second were answered
        self._runner: web.AppRunner | None = None
        self.host = "127.0.0.1"
        self.port = 0

    # ---- knobs for tests -------------------------------------------------------------------------

    def script(
        self, contains: str, answer: str | None = None, *, fail: bool = False, latency: float | None = None,
        score: int | None = None, level: str | None = None,
    ) -> None:
        """Questions containing `contains` get this answer / failure / latency / confidence instead."""
        self._scripts.insert(0, _Script(contains.lower(), answer, fail, latency, score, level))

    def inject(
        self, endpoint: str, status: int | None = None, *, times: int = 1, retry_after: str | None = None,
        stall: float = 0.0,
    ) -> None:
        """Make the next `times` calls to `endpoint` answer `status` (with Retry-After) or stall first."""
        self.faults.append(Fault(endpoint, status, retry_after, stall, times))

    def calls(self, endpoint: str | None = None, *, key: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only one endpoint's and only those sent with `key`."""
        key_id = None if key is None else key_fingerprint(key)
        return [r for r in self.requests
                if (endpoint is None or r.endpoint == endpoint) and (key_id is None or r.key_id == key_id)]

    def sites_of(self, key: str | None) -> tuple[str, ...] | None:
        """The site ids `key` may use, or None when the simulator does not know the key (401)."""
        if key is None:
            return None
        if key == self.config.api_key:
            return tuple(self.config.sites)
        sites = self.config.keys.get(key)
        return None if sites is None else tuple(sites)

    def complete_now(self) -> None:
        """Make every pending answer ready at once (tests that do not want to wait)."""
        now = time.monotonic()
        for chat in self.chats.values():
            chat.ready_at = min(chat.ready_at, now)

    # ---- lifecycle --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What UPPZY_BASE_URL should be to reach this simulator."""
        return f"http://{self.host}:{self.port}/api/v1"

    def app(self) -> web.Application:
        """The aiohttp application (routes under /api/v1/m2m)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=1024 * 1024)
        p = "/api/v1/m2m"
        app.router.add_post(p + "/sites/{site}/chat", self._chat)
        app.router.add_post(p + "/sites/{site}/chat/async", self._chat_async)
        app.router.add_get(p + "/sites/{site}/chat/requests/{rid}", self._status)
        app.router.add_post(p + "/sites/{site}/chat/feedback", self._feedback)
        app.router.add_post(p + "/sites/{site}/chat/session/close", self._close)
        app.router.add_get(p + "/sites/{site}/sessions", self._sessions)
        app.router.add_get(p + "/sites/{site}", self._site)
        app.router.add_get(p + "/tenants/{tenant}/limits", self._limits)
        app.router.add_get("/_simulator/record", self._record)
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = any free port); returns the base URL."""
        # A stalled handler (stall faults last up to stall_seconds) must not hold stop() for aiohttp's default 60 s.
        self._runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                     shutdown_timeout=SHUTDOWN_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.host = host
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.base_url

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- cross-cutting: auth, faults, recording ---------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        endpoint = _endpoint_name(request)
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
        request[_BODY] = body
        response = await self._answer(request, handler, endpoint)
        key = request.headers.get("X-API-Key")
        self.requests.append(RecordedRequest(
            request.method, request.path, endpoint, response.status, body, dict(request.query), time.monotonic(),
            None if key is None else key_fingerprint(key),
        ))
        return response

    async def _answer(self, request: web.Request, handler: Any, endpoint: str) -> web.StreamResponse:
        if endpoint == "record":
            return await handler(request)
        if request.match_info.route.resource is None or endpoint == "unknown":
            return _json(404, {"error": "not found"})
        sites = self.sites_of(request.headers.get("X-API-Key"))
        if sites is None:
            return _json(401, {"error": "invalid_api_key"})
        if self.config.forbidden:
            return _json(403, {"error": "api_access_not_available_on_plan"})
        fault = self._take_fault(endpoint)
        if fault is not None:
            if fault.stall:
                await asyncio.sleep(fault.stall)
            if fault.status is not None:
                return self._fault_response(fault.status, fault.retry_after)
        if self._random_faults_apply(endpoint):
            roll = self.rng.random()
            cfg = self.config
            if roll < cfg.stall_rate:
                await asyncio.sleep(cfg.stall_seconds)
            elif roll < cfg.stall_rate + cfg.rate_limit_rate:
                return self._fault_response(429, None if cfg.retry_after is None else f"{cfg.retry_after:g}")
            elif roll < cfg.stall_rate + cfg.rate_limit_rate + cfg.error_rate:
                return self._fault_response(self.rng.choice((500, 502, 503)), None)
        if endpoint == "chat_status" and self.config.status_rate_limit is not None:
            limited = self._over_status_limit(self.config.status_rate_limit)
            if limited is not None:
                return self._fault_response(429, limited)
        site = request.match_info.get("site")
        if site is not None and site not in sites:  # unknown, or another key's: the same answer, so nothing leaks
            return _json(404, {"error": "site not found"})
        return await handler(request)

    def _over_status_limit(self, limit: float) -> str | None:
        """None when a status call fits the hidden limit (and is counted), else its Retry-After."""
        now = time.monotonic()
        window = self._status_window
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= max(1, int(limit)):
            return str(max(1, math.ceil(window[0] + 1.0 - now)))
        window.append(now)
        return None

    def _random_faults_apply(self, endpoint: str) -> bool:
        endpoints = self.config.fault_endpoints
        return endpoints is None or endpoint in endpoints

    def _take_fault(self, endpoint: str) -> Fault | None:
        for fault in self.faults:
            if fault.endpoint == endpoint:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    @staticmethod
    def _fault_response(status: int, retry_after: str | None) -> web.Response:
        if status == 429:
            headers = {"Retry-After": retry_after} if retry_after is not None else None
            return _json(429, {"error": "rate_limited"}, headers)
        return _json(status, {"error": "internal error" if status >= 500 else "injected"})

    # ---- chat ------------------------------------------------------------------------------------

    def _validate_chat(self, request: web.Request) -> tuple[str, str, str | None] | web.Response:
        body = request[_BODY]
        if not isinstance(body, dict):
            return _json(400, {"error": "invalid payload"})
        message, session_id, email = body.get("message"), body.get("session_id"), body.get("email")
        if not isinstance(session_id, str) or not session_id.strip():
            return _json(400, {"error": "session_id is required"})
        if not isinstance(message, str) or not message.strip():
            return _json(400, {"error": "message is required"})
        if len(message) > MAX_MESSAGE_CHARS:
            return _json(400, {"error": f"message is longer than {MAX_MESSAGE_CHARS} characters"})
        if email is not None and not isinstance(email, str):
            return _json(400, {"error": "email must be a string"})
        session = self.sessions.get((request.match_info["site"], session_id))
        if session is not None and session.closed_at is not None:
            return _json(409, {"error": "session is closed"})
        return session_id, message, email

    def _new_request(self, site: str, session_id: str, message: str, email: str | None) -> _Request:
        now_iso = _now_iso()
        session = self.sessions.get((site, session_id))
        if session is None:
            session = self.sessions[(site, session_id)] = _Session(session_id, site, now_iso, now_iso, email)
        session.updated_at = now_iso
        session.message_count += 1
        session.email = session.email or email
        reply = self.knowledge.answer(message)
        low, high = self.config.latency
        latency = self.rng.uniform(low, high)
        fail = self.rng.random() < self.config.fail_rate
        for script in self._scripts:
            if script.contains in message.lower():
                reply = Reply(script.answer if script.answer is not None else reply.answer,
                              script.score if script.score is not None else reply.score,
                              script.level or reply.level)
                latency = script.latency if script.latency is not None else latency
                fail = script.fail
                break
        now = time.monotonic()
        chat = _Request("req_" + uuid.uuid4().hex, site, session_id, message, now + latency, reply, fail,
                        submitted_at=now)
        self.chats[chat.id] = chat
        return chat

    async def _chat(self, request: web.Request) -> web.Response:
        checked = self._validate_chat(request)
        if isinstance(checked, web.Response):
            return checked
        chat = self._new_request(request.match_info["site"], *checked)
        await asyncio.sleep(max(0.0, chat.ready_at - time.monotonic()))
        if chat.fail:
            return _json(502, {"error": "answer generation failed", "request_id": chat.id})
        return _json(200, {"session_id": chat.session_id, "request_id": chat.id, "status": "completed",
                           **_answer_fields(chat.reply)})

    async def _chat_async(self, request: web.Request) -> web.Response:
        checked = self._validate_chat(request)
        if isinstance(checked, web.Response):
            return checked
        chat = self._new_request(request.match_info["site"], *checked)
        return _json(202, {"session_id": chat.session_id, "request_id": chat.id, "status": "pending"})

    async def _status(self, request: web.Request) -> web.Response:
        chat = self.chats.get(request.match_info["rid"])
        if chat is None or chat.site != request.match_info["site"]:
            return _json(404, {"error": "request not found"})
        chat.polls += 1
        payload: dict[str, Any] = {"session_id": chat.session_id, "request_id": chat.id}
        now = time.monotonic()
        if now < chat.ready_at:
            payload["status"] = "processing" if chat.polls > 1 else "pending"
        elif chat.fail:
            payload.update(status="failed", error="answer generation failed")
        else:
            chat.ready_seen_at = chat.ready_seen_at or now
            payload.update(status="completed", **_answer_fields(chat.reply))
        return _json(200, payload)

    def state_of(self, request_id: str) -> str:
        """'pending', 'completed' or 'failed' as the simulator would answer now (for tests and benches)."""
        chat = self.chats[request_id]
        if time.monotonic() < chat.ready_at:
            return "pending"
        return "failed" if chat.fail else "completed"

    # ---- feedback, sessions ----------------------------------------------------------------------

    async def _feedback(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        if not isinstance(body, dict):
            return _json(400, {"error": "invalid payload"})
        for name in ("session_id", "request_id", "feedback"):
            if not isinstance(body.get(name), str) or not body[name]:
                return _json(400, {"error": f"{name} is required"})
        if body["feedback"] not in ("good", "bad"):
            return _json(400, {"error": "feedback must be 'good' or 'bad'"})
        chat = self.chats.get(body["request_id"])
        if chat is None or chat.site != request.match_info["site"] or chat.session_id != body["session_id"]:
            return _json(404, {"error": "request not found"})
        if time.monotonic() < chat.ready_at or chat.fail:
            return _json(409, {"error": "feedback is only accepted for completed requests"})
        payload = {"status": "ok", "request_id": chat.id, "feedback": chat.feedback or body["feedback"]}
        if chat.feedback is None:
            chat.feedback, chat.feedback_at = body["feedback"], _now_iso()
            payload["feedback_submitted_at"] = chat.feedback_at
        return _json(200, payload)

    async def _close(self, request: web.Request) -> web.Response:
        body = request[_BODY]
        session_id = body.get("session_id") if isinstance(body, dict) else None
        if not isinstance(session_id, str) or not session_id:
            return _json(400, {"error": "session_id is required"})
        site = request.match_info["site"]
        session = self.sessions.get((site, session_id))
        now_iso = _now_iso()
        if session is None:  # closing a never-used id succeeds and reserves it as closed
            session = self.sessions[(site, session_id)] = _Session(session_id, site, now_iso, now_iso)
        if session.closed_at is None:
            session.closed_at = session.updated_at = now_iso
        return _json(200, {"status": "ok"})

    async def _sessions(self, request: web.Request) -> web.Response:
        site = request.match_info["site"]
        email = request.query.get("email")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return _json(400, {"error": "limit must be a number"})
        rows = [s for s in self.sessions.values() if s.site == site and (email is None or s.email == email)]
        rows.sort(key=lambda s: s.updated_at, reverse=True)
        return _json(200, {"sessions": [
            {"id": s.id, "email": s.email, "created_at": s.created_at, "updated_at": s.updated_at,
             "closed_at": s.closed_at, "message_count": s.message_count} for s in rows[: max(1, limit)]
        ], "total": len(rows)})

    async def _site(self, request: web.Request) -> web.Response:
        site = request.match_info["site"]
        return _json(200, {"id": site, "name": "Demo Store Assistant", "tenant_id": self.config.tenant_id,
                           "domain": "shop.example.com", "status": "active"})

    async def _limits(self, request: web.Request) -> web.Response:
        if request.match_info["tenant"] != self.config.tenant_id:
            return _json(404, {"error": "tenant not found"})
        return _json(200, {"tenant_id": self.config.tenant_id, "plan": "level2",
                           "limits": {"requests_per_minute": 600, "monthly_messages": 100_000},
                           "usage": {"monthly_messages": len(self.chats)}})


    async def _record(self, request: web.Request) -> web.Response:
        """Benchmarks in another process read when each answer became ready (monotonic clock) and every call."""
        return _json(200, {
            "chats": [{"request_id": c.id, "session_id": c.session_id, "ready_at": c.ready_at, "polls": c.polls,
                       "fail": c.fail, "submitted_at": c.submitted_at} for c in self.chats.values()],
            "calls": [{"endpoint": r.endpoint, "at": r.at, "status": r.status, "key_id": r.key_id}
                      for r in self.requests if r.endpoint != "record"],
        })


def _answer_fields(reply: Reply) -> dict[str, Any]:
    return {"answer": reply.answer, "confidence_score": reply.score, "confidence_level": reply.level}


_ROUTE_NAMES = {
    "_chat": "chat", "_chat_async": "chat_async", "_status": "chat_status", "_feedback": "chat_feedback",
    "_close": "session_close", "_sessions": "sessions", "_site": "site", "_limits": "tenant_limits",
    "_record": "record",
}


def _endpoint_name(request: web.Request) -> str:
    handler = getattr(request.match_info, "handler", None)
    return _ROUTE_NAMES.get(getattr(handler, "__name__", ""), "unknown")


def http_date(seconds_from_now: float) -> str:
    """An HTTP-date Retry-After value, for tests of that form."""
    return format_datetime(datetime.fromtimestamp(time.time() + seconds_from_now, UTC), usegmt=True)
