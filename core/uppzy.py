"""The one piece of core that talks to Uppzy's M2M chat API: typed results, typed errors, bounded retries."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import httpx

from core.config import Secret
from core.errors import UppzyError, UppzyTimeout, UppzyUnavailable, error_for_status
from core.http_transport import AiohttpTransport
from core.retry import Repeatable, RetryPolicy, backoff_hook, parse_retry_after
from core.uppzy_types import (
    CallRecord,
    ChatAnswer,
    FeedbackReceipt,
    Rating,
    RequestStatus,
    SessionInfo,
    Submission,
    Timeouts,
)
from core.uppzy_types import confidence_of as _confidence
from core.uppzy_types import text_of as _text

__all__ = ["UppzyClient"]

log = logging.getLogger(__name__)
URL_CACHE = 4096  # parsed URLs kept: a status path is polled several times, the other paths are per site



class UppzyClient:
    """Async Uppzy M2M client: the httpx API on aiohttp's connection pool (core.http_transport), the key only in
    request headers. `transport` replaces the pool (tests pass httpx.MockTransport)."""

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Secret,
        site_id: str,
        tenant_id: str | None = None,
        timeouts: Timeouts | None = None,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 100,
        observer: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self._api_key = api_key
        self.site_id = site_id
        self.tenant_id = tenant_id
        self.timeouts = timeouts or Timeouts()
        self.retry = retry or RetryPolicy()
        self.observer = observer
        self._urls: dict[str, httpx.URL] = {}
        self._headers: list[tuple[bytes, bytes]] | None = None  # the client's headers and the key, built once
        self._timeouts: dict[float, dict[str, float | None]] = {}  # the timeout extension, per timeout value
        self._transport = transport if transport is not None else AiohttpTransport(max_connections=max_connections)
        headers = {"Accept": "application/json", "User-Agent": "uppzy-chat-bot/0.1"}
        base = httpx.URL(base_url)
        if base.username or base.password:  # as httpx's own auth flow would: user:password in the URL is Basic auth
            pair = f"{base.username}:{base.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        # Only its base URL, headers and open/closed state are used: requests are built here and go straight to the
        # transport (no cookies, auth flows or redirects), with their own timeouts.
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            transport=self._transport,
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"UppzyClient(base_url={str(self._http.base_url)!r}, site_id={self.site_id!r})"

    async def __aenter__(self) -> UppzyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._http.aclose()

    # ---- chat -------------------------------------------------------------------------------------

    async def chat(
        self, session_id: str, message: str, *, email: str | None = None, site_id: str | None = None,
        response_language: str | None = None,
    ) -> ChatAnswer:
        """Sync chat: ask and wait (up to Timeouts.chat) for the answer in the same round trip."""
        data = await self._call(
            "POST", f"m2m/sites/{self._site(site_id)}/chat", "chat", Repeatable.ONCE,
            json=_chat_body(session_id, message, email, response_language), timeout=self.timeouts.chat,
        )
        return ChatAnswer(
            session_id=_text(data, "session_id", session_id), request_id=_text(data, "request_id"),
            answer=_text(data, "answer"), confidence=_confidence(data), raw=data,
        )

    async def submit(
        self, session_id: str, message: str, *, email: str | None = None, site_id: str | None = None,
        response_language: str | None = None,
    ) -> Submission:
        """Async submit: returns a request handle at once; a timeout raises rather than resubmitting."""
        data = await self._call(
            "POST", f"m2m/sites/{self._site(site_id)}/chat/async", "chat_async", Repeatable.ONCE,
            json=_chat_body(session_id, message, email, response_language),
        )
        request_id = _text(data, "request_id")
        if not request_id:
            raise UppzyUnavailable("Uppzy chat_async answered without a request_id", endpoint="chat_async",
                                   maybe_processed=True)
        return Submission(
            request_id=request_id, session_id=_text(data, "session_id", session_id),
            status=_text(data, "status", "pending"), raw=data,
        )

    async def status(self, request_id: str, *, site_id: str | None = None, retry: bool = True) -> RequestStatus:
        """Poll one async request; retry=False leaves re-polling to the caller's scheduler."""
        data = await self._call(
            "GET", f"m2m/sites/{self._site(site_id)}/chat/requests/{quote(request_id, safe='')}",
            "chat_status", Repeatable.SAFE if retry else Repeatable.NEVER, request_id=request_id,
        )
        answer = data.get("answer")
        error = data.get("error")
        return RequestStatus(
            request_id=_text(data, "request_id", request_id), session_id=_text(data, "session_id"),
            status=_text(data, "status", "pending").lower(), answer=answer if isinstance(answer, str) else None,
            error=error if isinstance(error, str) else None, confidence=_confidence(data), raw=data,
        )

    async def feedback(
        self, session_id: str, request_id: str, rating: Rating, *, site_id: str | None = None
    ) -> FeedbackReceipt:
        """Rate a completed answer good or bad; Uppzy keeps the first rating and says so by omission."""
        if rating not in ("good", "bad"):
            raise ValueError("rating must be 'good' or 'bad'")
        data = await self._call(
            "POST", f"m2m/sites/{self._site(site_id)}/chat/feedback", "chat_feedback", Repeatable.SAFE,
            json={"session_id": session_id, "request_id": request_id, "feedback": rating}, request_id=request_id,
        )
        submitted = data.get("feedback_submitted_at")
        return FeedbackReceipt(
            request_id=_text(data, "request_id", request_id), feedback=_text(data, "feedback", rating),
            submitted_at=submitted if isinstance(submitted, str) else None,
        )

    async def close_session(self, session_id: str, *, site_id: str | None = None) -> None:
        """Close a session (idempotent); it then accepts no messages and the bot starts a new id."""
        await self._call(
            "POST", f"m2m/sites/{self._site(site_id)}/chat/session/close", "session_close", Repeatable.SAFE,
            json={"session_id": session_id},
        )

    async def list_sessions(
        self, *, email: str | None = None, site_id: str | None = None, limit: int | None = None
    ) -> list[SessionInfo]:
        """List a site's sessions, optionally only one user's (by email)."""
        params: dict[str, str] = {}
        if email:
            params["email"] = email
        if limit:
            params["limit"] = str(limit)
        data = await self._call(
            "GET", f"m2m/sites/{self._site(site_id)}/sessions", "sessions", Repeatable.SAFE, params=params,
        )
        items = data.get("sessions")
        return [
            SessionInfo(
                id=str(item.get("id") or item.get("session_id") or ""),
                created_at=item.get("created_at"), updated_at=item.get("updated_at"),
                closed_at=item.get("closed_at"),
                message_count=item.get("message_count") if isinstance(item.get("message_count"), int) else None,
                raw=item,
            )
            for item in (items if isinstance(items, list) else [])
            if isinstance(item, dict)
        ]

    # ---- connectivity ----------------------------------------------------------------------------

    async def tenant_limits(self, tenant_id: str | None = None) -> Mapping[str, Any]:
        """The documented connectivity check: proves the key, its tenant and the network path."""
        tenant = tenant_id or self.tenant_id
        if not tenant:
            raise ValueError("tenant_limits needs a tenant id (UPPZY_TENANT_ID)")
        return await self._call("GET", f"m2m/tenants/{quote(tenant, safe='')}/limits", "tenant_limits",
                                Repeatable.SAFE)

    async def site(self, site_id: str | None = None) -> Mapping[str, Any]:
        """Read the site: a cheap site-scoped probe when no tenant id is configured."""
        return await self._call("GET", f"m2m/sites/{self._site(site_id)}", "site", Repeatable.SAFE)

    async def ping(self) -> Mapping[str, Any]:
        """Tenant limits when a tenant is configured, else a site read."""
        return await (self.tenant_limits() if self.tenant_id else self.site())

    # ---- transport ------------------------------------------------------------------------------

    def _site(self, site_id: str | None) -> str:
        return quote(site_id or self.site_id, safe="")

    def _url(self, path: str) -> httpx.URL:
        """The absolute URL of `path`, parsed once (httpx parses a relative one twice per request)."""
        url = self._urls.get(path)
        if url is None:
            if len(self._urls) >= URL_CACHE:
                del self._urls[next(iter(self._urls))]
            url = self._urls[path] = httpx.URL(str(self._http.base_url) + path)
        return url

    def _request_headers(self) -> list[tuple[bytes, bytes]]:
        """What the client's build_request would merge (its headers and the key), merged once, not per call."""
        if self._headers is None:
            merged = httpx.Headers(self._http.headers)
            merged["X-API-Key"] = self._api_key.reveal()
            self._headers = merged.raw
        return self._headers

    def _timeout(self, timeout: float) -> dict[str, float | None]:
        """httpx's timeout extension for `timeout` seconds (connect capped at the connect timeout)."""
        found = self._timeouts.get(timeout)
        if found is None:
            if len(self._timeouts) >= URL_CACHE:
                self._timeouts.clear()
            found = self._timeouts[timeout] = httpx.Timeout(timeout, connect=min(self.timeouts.connect,
                                                                                 timeout)).as_dict()
        return found

    async def _call(
        self, method: str, path: str, endpoint: str, repeatable: Repeatable, *,
        json: Mapping[str, Any] | None = None, params: Mapping[str, str] | None = None,
        timeout: float | None = None, request_id: str | None = None,
    ) -> Mapping[str, Any]:
        timeout = timeout or self.timeouts.default
        if repeatable is Repeatable.NEVER:  # the caller re-schedules: no retry context at all (status polls)
            return await self._attempt(method, path, endpoint, 1, json=json, params=params, timeout=timeout,
                                       request_id=request_id)
        policy = self.retry
        deadline = time.monotonic() + (policy.budget or float("inf"))
        attempt = 0
        async for retry_attempt in policy.retrying(backoff_hook(repeatable, deadline)):
            with retry_attempt:
                attempt += 1
                return await self._attempt(
                    method, path, endpoint, attempt, json=json, params=params,
                    timeout=timeout, request_id=request_id,
                )
        raise AssertionError("unreachable: stamina re-raises the last error")  # pragma: no cover

    async def _attempt(
        self, method: str, path: str, endpoint: str, attempt: int, *, json: Mapping[str, Any] | None,
        params: Mapping[str, str] | None, timeout: float, request_id: str | None,
    ) -> Mapping[str, Any]:
        started = time.monotonic()
        status: int | None = None
        try:
            try:
                async with asyncio.timeout(timeout):
                    request = httpx.Request(method, self._url(path), json=json, params=params,
                                            headers=self._request_headers(),
                                            extensions={"timeout": self._timeout(timeout)})
                    if self._http.is_closed:
                        raise RuntimeError("the Uppzy client is closed")
                    # Straight to the transport: the client's send() adds only what these calls never use (auth
                    # flows, redirects, event hooks, cookies), at about a third of the cost of a request.
                    response = await self._transport.handle_async_request(request)
                    body = await response.aread()
            except (TimeoutError, httpx.ReadTimeout, httpx.WriteTimeout) as exc:
                raise UppzyTimeout(
                    f"Uppzy {endpoint} did not answer within {timeout:g}s", endpoint=endpoint,
                    request_id=request_id, maybe_processed=True,
                ) from _scrub(exc)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise UppzyUnavailable(
                    f"Uppzy {endpoint} unreachable ({type(exc).__name__})", endpoint=endpoint, request_id=request_id,
                ) from _scrub(exc)
            except httpx.HTTPError as exc:
                raise UppzyUnavailable(
                    f"Uppzy {endpoint} connection failed mid-request ({type(exc).__name__})", endpoint=endpoint,
                    request_id=request_id, maybe_processed=True,
                ) from _scrub(exc)
            status = response.status_code
            parsed = _json_object(body)
            data = parsed if parsed is not None else {}
            request_id = request_id or _text(data, "request_id") or None
            if status >= 400:
                error = data.get("error")
                raise error_for_status(
                    status, endpoint=endpoint, request_id=request_id,
                    retry_after=parse_retry_after(response.headers.get("Retry-After")),
                    server_error=error if isinstance(error, str) else None,
                )
            if not (200 <= status < 300):
                raise UppzyUnavailable(f"Uppzy {endpoint} answered HTTP {status}", endpoint=endpoint,
                                       status=status)
            if parsed is None:  # a 2xx we cannot read: the server may have acted, so only SAFE calls retry it
                raise UppzyUnavailable(
                    f"Uppzy {endpoint} answered HTTP {status} with a body that is not a JSON object",
                    endpoint=endpoint, status=status, request_id=request_id, maybe_processed=True,
                )
            self._record(endpoint, status, started, attempt, request_id, None)
            return data
        except UppzyError as exc:
            self._record(endpoint, status, started, attempt, request_id, type(exc).__name__)
            raise

    def _record(
        self, endpoint: str, status: int | None, started: float, attempt: int, request_id: str | None,
        error: str | None,
    ) -> None:
        seconds = time.monotonic() - started
        level = logging.DEBUG if error is None else logging.WARNING
        log.log(
            level, "uppzy %s status=%s latency_ms=%.0f attempt=%d request_id=%s%s",
            endpoint, status if status is not None else "-", seconds * 1000, attempt, request_id or "-",
            f" error={error}" if error else "",
            extra={"endpoint": endpoint, "status": status, "latency_ms": round(seconds * 1000, 1),
                   "attempt": attempt, "request_id": request_id},
        )
        if self.observer is not None:
            self.observer(CallRecord(endpoint, status, seconds, attempt, error))


def _chat_body(
    session_id: str, message: str, email: str | None, response_language: str | None
) -> dict[str, str]:
    body = {"session_id": session_id, "message": message}
    if email:
        body["email"] = email
    if response_language:
        body["response_language"] = response_language
    return body


def _json_object(body: bytes) -> Mapping[str, Any] | None:
    """The body as a JSON object; {} for an empty body, None when it is something else (HTML, a list, junk)."""
    import json

    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _scrub(exc: BaseException) -> BaseException:
    """Drop the httpx request (and with it our headers) from a chained exception before it travels."""
    if isinstance(exc, httpx.RequestError):
        exc._request = None  # type: ignore[attr-defined]
    return exc
