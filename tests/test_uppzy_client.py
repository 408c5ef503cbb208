"""UppzyClient over real loopback HTTP against the simulator: endpoints, typed errors, the retry matrix, redaction."""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Awaitable, Callable

import httpx
import pytest

from core.config import Secret
from core.errors import (
    UppzyAuthError,
    UppzyBadRequest,
    UppzyConflict,
    UppzyError,
    UppzyForbidden,
    UppzyNotFound,
    UppzyRateLimited,
    UppzyRejected,
    UppzyTimeout,
    UppzyUnavailable,
)
from core.retry import RetryPolicy
from core.uppzy import UppzyClient
from core.uppzy_types import CallRecord, Timeouts
from simulator import Simulator
from simulator.server import http_date
from tests.fault_support import wait_until

MakeSim = Callable[..., Awaitable[Simulator]]
MakeClient = Callable[..., UppzyClient]

SECRET_KEY = "sk-live-SECRET-1234567890"
SHORT = Timeouts(connect=1, default=0.2, chat=0.2)  # for stall tests: a 0.4 s stall is past every timeout


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def wait_for_calls(sim: Simulator, endpoint: str, count: int, timeout: float = 3.0) -> None:
    """Wait until the simulator has recorded `count` calls to `endpoint` (stalled calls are recorded late)."""
    await wait_until(lambda: len(sim.calls(endpoint)) >= count, timeout=timeout,
                     what=f"{count} recorded {endpoint} call(s)")


async def wait_for_stalled_call(sim: Simulator, endpoint: str, started: float, stall: float) -> None:
    """Wait until the call stalled for `stall` seconds is recorded (the simulator records a call when it answers).

    Any other call the client made before it gave up (at its 0.2 s timeout) was answered at once, so it is
    recorded by then too: from here on the count of `endpoint` calls is final.
    """
    await wait_until(lambda: any(c.at - started >= stall - 0.05 for c in sim.calls(endpoint)), timeout=3.0,
                     what=f"the stalled {endpoint} call to be recorded")


async def completed_request(uppzy: UppzyClient, session_id: str = "s-1", message: str = "hello") -> str:
    """Submit a question to the zero-latency simulator and return its request id once it is completed."""
    submission = await uppzy.submit(session_id, message)
    assert (await uppzy.status(submission.request_id)).status == "completed"
    return submission.request_id


# ---- endpoints ------------------------------------------------------------------------------------------------


async def test_sync_chat_returns_answer_with_confidence(uppzy: UppzyClient, sim: Simulator) -> None:
    """Sync chat returns the answer, the server's request id and its confidence score and level."""
    answer = await uppzy.chat("s-1", "How do I return an item for a refund?")
    assert answer.session_id == "s-1"
    assert answer.request_id.startswith("req_")
    assert "Returns are accepted" in answer.answer
    assert answer.confidence.level == "high"
    assert answer.confidence.score is not None and answer.confidence.score >= 75
    assert not answer.confidence.is_low
    [call] = sim.calls("chat")
    assert call.method == "POST" and call.path == "/api/v1/m2m/sites/demo-site/chat"
    assert call.body == {"session_id": "s-1", "message": "How do I return an item for a refund?"}


async def test_chat_sends_optional_email_and_language(uppzy: UppzyClient, sim: Simulator) -> None:
    """email and response_language travel in the chat body only when given."""
    await uppzy.chat("s-1", "hi", email="ann@example.com", response_language="en")
    assert sim.calls("chat")[0].body == {
        "session_id": "s-1", "message": "hi", "email": "ann@example.com", "response_language": "en",
    }


async def test_low_confidence_answer_is_flagged(uppzy: UppzyClient) -> None:
    """A question outside the knowledge base comes back with a low confidence level."""
    answer = await uppzy.chat("s-1", "qwzx vbnm plokij")
    assert answer.confidence.level == "low"
    assert answer.confidence.is_low


async def test_async_submit_then_poll_until_completed(uppzy: UppzyClient, sim: Simulator) -> None:
    """Submit returns a pending handle; polls report in-progress until the answer is ready, then completed."""
    sim.script("slow", latency=30)
    submission = await uppzy.submit("s-1", "a slow question about shipping")
    assert submission.status == "pending"
    assert submission.session_id == "s-1"
    first = await uppzy.status(submission.request_id)
    assert first.status == "pending" and not first.done and first.answer is None
    second = await uppzy.status(submission.request_id)
    assert not second.done
    sim.complete_now()
    final = await uppzy.status(submission.request_id)
    assert final.done and final.status == "completed"
    assert final.request_id == submission.request_id and final.session_id == "s-1"
    assert final.answer is not None and "shipping" in final.answer
    assert final.confidence.level in {"medium", "high"} and final.confidence.score is not None
    assert [c.path for c in sim.calls("chat_status")] == [
        f"/api/v1/m2m/sites/demo-site/chat/requests/{submission.request_id}"] * 3


async def test_async_request_that_fails_reports_failed_status(uppzy: UppzyClient, sim: Simulator) -> None:
    """A request the server could not answer ends with status failed, an error text and no answer."""
    sim.script("explode", fail=True)
    submission = await uppzy.submit("s-1", "please explode")
    status = await uppzy.status(submission.request_id)
    assert status.done and status.status == "failed"
    assert status.error and status.answer is None


async def test_feedback_first_then_repeat(uppzy: UppzyClient, sim: Simulator) -> None:
    """The first rating is recorded with a timestamp; a repeat succeeds without one and keeps the first rating."""
    request_id = await completed_request(uppzy)
    first = await uppzy.feedback("s-1", request_id, "good")
    assert first.first and first.submitted_at and first.feedback == "good" and first.request_id == request_id
    again = await uppzy.feedback("s-1", request_id, "bad")
    assert not again.first and again.submitted_at is None and again.feedback == "good"
    assert [c.body for c in sim.calls("chat_feedback")] == [
        {"session_id": "s-1", "request_id": request_id, "feedback": "good"},
        {"session_id": "s-1", "request_id": request_id, "feedback": "bad"},
    ]


async def test_feedback_before_completion_is_a_conflict(uppzy: UppzyClient, sim: Simulator) -> None:
    """Rating an answer that is not completed yet raises UppzyConflict (409) after one call."""
    sim.script("slow", latency=30)
    submission = await uppzy.submit("s-1", "slow one")
    with pytest.raises(UppzyConflict) as info:
        await uppzy.feedback("s-1", submission.request_id, "good")
    assert info.value.status == 409 and info.value.request_id == submission.request_id
    assert len(sim.calls("chat_feedback")) == 1


async def test_feedback_rejects_a_rating_other_than_good_or_bad(uppzy: UppzyClient, sim: Simulator) -> None:
    """A rating other than good/bad raises ValueError before anything is sent."""
    with pytest.raises(ValueError, match="good"):
        await uppzy.feedback("s-1", "req_x", "meh")  # type: ignore[arg-type]
    assert sim.calls() == []


async def test_list_sessions_filters_by_email(uppzy: UppzyClient, sim: Simulator) -> None:
    """list_sessions returns every session, or only one user's when given an email, with the documented fields."""
    await uppzy.chat("s-ann", "hello", email="ann@example.com")
    await uppzy.chat("s-ann", "shipping?", email="ann@example.com")
    await uppzy.chat("s-bob", "hello", email="bob@example.com")
    everyone = await uppzy.list_sessions()
    assert {s.id for s in everyone} == {"s-ann", "s-bob"}
    [ann] = await uppzy.list_sessions(email="ann@example.com")
    assert ann.id == "s-ann" and ann.message_count == 2 and ann.open
    assert ann.created_at and ann.updated_at and ann.closed_at is None
    assert sim.calls("sessions")[-1].query == {"email": "ann@example.com"}


async def test_close_session_is_idempotent_and_blocks_further_chat(uppzy: UppzyClient, sim: Simulator) -> None:
    """Closing twice succeeds both times; chatting on the closed session raises UppzyConflict without a retry."""
    await uppzy.chat("s-1", "hello")
    await uppzy.close_session("s-1")
    await uppzy.close_session("s-1")
    assert [c.body for c in sim.calls("session_close")] == [{"session_id": "s-1"}] * 2
    [session] = await uppzy.list_sessions()
    assert not session.open and session.closed_at
    with pytest.raises(UppzyConflict):
        await uppzy.chat("s-1", "are you there?")
    with pytest.raises(UppzyConflict):
        await uppzy.submit("s-1", "are you there?")
    assert len(sim.calls("chat")) == 2 and len(sim.calls("chat_async")) == 1


async def test_tenant_limits_and_site(uppzy: UppzyClient, sim: Simulator) -> None:
    """tenant_limits and site read the tenant's limits and the site record."""
    limits = await uppzy.tenant_limits()
    assert limits["tenant_id"] == "demo-tenant" and "limits" in limits
    site = await uppzy.site()
    assert site["id"] == "demo-site"
    assert [c.path for c in sim.calls()] == ["/api/v1/m2m/tenants/demo-tenant/limits", "/api/v1/m2m/sites/demo-site"]


async def test_tenant_limits_needs_a_tenant(make_uppzy: MakeClient, sim: Simulator) -> None:
    """Without a tenant id, tenant_limits raises ValueError and sends nothing."""
    client = make_uppzy(tenant_id=None)
    with pytest.raises(ValueError, match="tenant"):
        await client.tenant_limits()
    assert sim.calls() == []


async def test_ping_uses_tenant_limits_when_tenant_is_set(uppzy: UppzyClient, sim: Simulator) -> None:
    """ping probes tenant limits when a tenant id is configured."""
    await uppzy.ping()
    assert [c.endpoint for c in sim.calls()] == ["tenant_limits"]


async def test_ping_uses_site_when_no_tenant(make_uppzy: MakeClient, sim: Simulator) -> None:
    """ping falls back to the site read when no tenant id is configured."""
    await make_uppzy(tenant_id=None).ping()
    assert [c.endpoint for c in sim.calls()] == ["site"]


# ---- errors from status codes -----------------------------------------------------------------------------------


async def test_missing_message_is_bad_request(uppzy: UppzyClient, sim: Simulator) -> None:
    """An empty message gets 400 and raises UppzyBadRequest carrying the server's error text, after one call."""
    with pytest.raises(UppzyBadRequest) as info:
        await uppzy.chat("s-1", "")
    assert info.value.status == 400 and info.value.server_error == "message is required"
    assert info.value.endpoint == "chat"
    assert len(sim.calls("chat")) == 1


async def test_wrong_key_is_auth_error(make_uppzy: MakeClient, sim: Simulator) -> None:
    """A wrong key gets 401 and raises UppzyAuthError after exactly one call, even on a safe read."""
    client = make_uppzy(api_key=Secret("wrong-key"))
    with pytest.raises(UppzyAuthError) as info:
        await client.list_sessions()
    assert info.value.status == 401 and info.value.server_error == "invalid_api_key"
    assert len(sim.calls("sessions")) == 1


async def test_plan_without_m2m_is_forbidden(make_sim: MakeSim, make_uppzy: MakeClient) -> None:
    """A plan without M2M access gets 403 and raises UppzyForbidden after one call."""
    forbidden = await make_sim(forbidden=True)
    client = make_uppzy(base_url=forbidden.base_url)
    with pytest.raises(UppzyForbidden) as info:
        await client.site()
    assert info.value.status == 403
    assert len(forbidden.calls("site")) == 1


async def test_unknown_site_is_not_found(make_uppzy: MakeClient, sim: Simulator) -> None:
    """A site id the key does not know gets 404 and raises UppzyNotFound."""
    with pytest.raises(UppzyNotFound) as info:
        await make_uppzy(site_id="no-such-site").chat("s-1", "hello")
    assert info.value.server_error == "site not found"
    assert len(sim.calls("chat")) == 1


async def test_unknown_request_is_not_found(uppzy: UppzyClient, sim: Simulator) -> None:
    """Polling an unknown request id raises UppzyNotFound carrying that id, after one call."""
    with pytest.raises(UppzyNotFound) as info:
        await uppzy.status("req_doesnotexist")
    assert info.value.request_id == "req_doesnotexist" and info.value.endpoint == "chat_status"
    assert len(sim.calls("chat_status")) == 1


async def test_rate_limit_exhausts_attempts_then_raises_rate_limited(uppzy: UppzyClient, sim: Simulator) -> None:
    """Sustained 429s are retried up to the attempt cap, then UppzyRateLimited carries the parsed Retry-After."""
    sim.inject("chat_status", 429, times=10, retry_after="0")
    with pytest.raises(UppzyRateLimited) as info:
        await uppzy.status("req_x")
    assert info.value.status == 429 and info.value.retry_after == 0.0
    assert len(sim.calls("chat_status")) == 4


async def test_rate_limit_without_retry_after_has_none(uppzy: UppzyClient, sim: Simulator) -> None:
    """A 429 without Retry-After is backed off by the policy and leaves retry_after as None."""
    sim.inject("sessions", 429, times=10)
    with pytest.raises(UppzyRateLimited) as info:
        await uppzy.list_sessions()
    assert info.value.retry_after is None
    assert len(sim.calls("sessions")) == 4


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_raise_unavailable(uppzy: UppzyClient, sim: Simulator, status: int) -> None:
    """Sustained 5xx answers raise UppzyUnavailable with the status once attempts run out (reads retry all)."""
    sim.inject("site", status, times=10)
    with pytest.raises(UppzyUnavailable) as info:
        await uppzy.site()
    assert info.value.status == status and info.value.maybe_processed == (status == 504)
    assert len(sim.calls("site")) == 4


async def test_submit_is_not_repeated_after_a_gateway_timeout(uppzy: UppzyClient, sim: Simulator) -> None:
    """A 504 on async submit may mean the backend took the question, so it is not sent again."""
    sim.inject("chat_async", 504, times=10)
    with pytest.raises(UppzyUnavailable) as info:
        await uppzy.submit("s-504", "hello")
    assert info.value.maybe_processed and len(sim.calls("chat_async")) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, UppzyBadRequest), (401, UppzyAuthError), (403, UppzyForbidden), (404, UppzyNotFound),
     (409, UppzyConflict), (422, UppzyRejected)],
)
@pytest.mark.parametrize("endpoint", ["sessions", "chat_async"])
async def test_client_errors_are_never_retried(
    uppzy: UppzyClient, sim: Simulator, status: int, error: type[UppzyError], endpoint: str
) -> None:
    """A 4xx other than 429 raises its class after exactly one call, on a safe read and on submit alike."""
    sim.inject(endpoint, status, times=10)
    with pytest.raises(error) as info:
        if endpoint == "sessions":
            await uppzy.list_sessions()
        else:
            await uppzy.submit("s-1", "hello")
    assert type(info.value) is error and info.value.status == status
    assert len(sim.calls(endpoint)) == 1


# ---- retries ----------------------------------------------------------------------------------------------------


async def test_status_poll_retries_5xx_then_succeeds(uppzy: UppzyClient, sim: Simulator) -> None:
    """Two 503s on a status poll are retried and the third call's answer is returned."""
    request_id = (await uppzy.submit("s-1", "hello")).request_id
    sim.inject("chat_status", 503, times=2)
    status = await uppzy.status(request_id)
    assert status.status == "completed"
    assert [c.status for c in sim.calls("chat_status")] == [503, 503, 200]


async def test_retry_after_seconds_is_honoured(uppzy: UppzyClient, sim: Simulator) -> None:
    """A 429 with Retry-After: 1 makes the client wait about a second before the retry that succeeds."""
    request_id = (await uppzy.submit("s-1", "hello")).request_id
    sim.inject("chat_status", 429, retry_after="1")
    started = time.monotonic()
    status = await uppzy.status(request_id)
    elapsed = time.monotonic() - started
    assert status.status == "completed"
    assert elapsed >= 0.9
    first, second = sim.calls("chat_status")
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.9


async def test_retry_after_http_date_is_honoured(uppzy: UppzyClient, sim: Simulator) -> None:
    """A 429 whose Retry-After is an HTTP date is waited out until that moment before retrying."""
    sim.inject("site", 429, retry_after=http_date(2))  # whole seconds: 1-2 s from now
    started = time.monotonic()
    await uppzy.site()
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0
    assert [c.status for c in sim.calls("site")] == [429, 200]


async def test_retry_after_beyond_budget_gives_up_at_once(uppzy: UppzyClient, sim: Simulator) -> None:
    """A Retry-After longer than the retry budget raises UppzyRateLimited immediately instead of sleeping."""
    sim.inject("sessions", 429, times=10, retry_after="30")
    started = time.monotonic()
    with pytest.raises(UppzyRateLimited) as info:
        await uppzy.list_sessions()
    assert time.monotonic() - started < 0.5
    assert info.value.retry_after == 30.0
    assert len(sim.calls("sessions")) == 1


async def test_attempts_are_bounded_by_policy(make_uppzy: MakeClient, sim: Simulator) -> None:
    """With attempts=3, a persistently failing read is sent exactly three times, then UppzyUnavailable."""
    client = make_uppzy(retry=RetryPolicy.no_wait(attempts=3))
    sim.inject("chat_status", 503, times=10)
    with pytest.raises(UppzyUnavailable):
        await client.status("req_x")
    assert len(sim.calls("chat_status")) == 3


async def test_retry_budget_bounds_total_time(make_uppzy: MakeClient, sim: Simulator) -> None:
    """The retry budget stops retries once that many seconds have passed, whatever the attempt cap."""
    policy = RetryPolicy(attempts=100, budget=0.3, initial=0.05, maximum=0.05, jitter=0.0)
    client = make_uppzy(retry=policy)
    sim.inject("site", 503, times=1000)
    started = time.monotonic()
    with pytest.raises(UppzyUnavailable):
        await client.site()
    assert time.monotonic() - started < 1.0
    assert 2 <= len(sim.calls("site")) < 100


async def test_status_without_retry_makes_one_call(uppzy: UppzyClient, sim: Simulator) -> None:
    """status(retry=False) makes exactly one call and leaves re-polling to the caller."""
    sim.inject("chat_status", 503, times=10)
    with pytest.raises(UppzyUnavailable):
        await uppzy.status("req_x", retry=False)
    assert len(sim.calls("chat_status")) == 1


async def test_submit_retries_5xx_and_creates_one_turn(uppzy: UppzyClient, sim: Simulator) -> None:
    """A submit answered 503 twice is retried and the third call creates the one chat turn."""
    sim.inject("chat_async", 503, times=2)
    submission = await uppzy.submit("s-1", "hello")
    assert [c.status for c in sim.calls("chat_async")] == [503, 503, 202]
    assert list(sim.chats) == [submission.request_id]


async def test_submit_5xx_retries_are_bounded(uppzy: UppzyClient, sim: Simulator) -> None:
    """A submit that keeps getting 5xx is sent at most `attempts` times, then UppzyUnavailable."""
    sim.inject("chat_async", 503, times=10)
    with pytest.raises(UppzyUnavailable):
        await uppzy.submit("s-1", "hello")
    assert len(sim.calls("chat_async")) == 4
    assert sim.chats == {}


async def test_submit_timeout_is_never_resubmitted(make_uppzy: MakeClient, sim: Simulator) -> None:
    """A submit that stalls past the timeout raises UppzyTimeout (maybe processed) and is sent only once."""
    client = make_uppzy(timeouts=SHORT)
    sim.inject("chat_async", stall=0.4)
    started = time.monotonic()
    with pytest.raises(UppzyTimeout) as info:
        await client.submit("s-1", "hello")
    assert info.value.maybe_processed and info.value.endpoint == "chat_async"
    await wait_for_stalled_call(sim, "chat_async", started, 0.4)
    assert len(sim.calls("chat_async")) == 1


async def test_sync_chat_timeout_is_not_retried(make_uppzy: MakeClient, sim: Simulator) -> None:
    """A sync chat that stalls past the chat timeout raises UppzyTimeout without sending the question again."""
    client = make_uppzy(timeouts=SHORT)
    sim.inject("chat", stall=0.4)
    started = time.monotonic()
    with pytest.raises(UppzyTimeout):
        await client.chat("s-1", "hello")
    await wait_for_stalled_call(sim, "chat", started, 0.4)
    assert len(sim.calls("chat")) == 1


async def test_status_timeout_is_retried(make_uppzy: MakeClient, sim: Simulator) -> None:
    """A status poll that stalls past the timeout is retried, and the retry's answer is returned."""
    client = make_uppzy(timeouts=SHORT)
    request_id = (await client.submit("s-1", "hello")).request_id
    sim.inject("chat_status", stall=0.4)
    status = await client.status(request_id)
    assert status.status == "completed"
    await wait_for_calls(sim, "chat_status", 2)
    assert len(sim.calls("chat_status")) == 2


async def test_connection_refused_is_unavailable_and_read_is_retried() -> None:
    """A closed port raises UppzyUnavailable (not maybe processed) after every attempt of a read."""
    records: list[CallRecord] = []
    async with UppzyClient(
        base_url=f"http://127.0.0.1:{free_port()}/api/v1", api_key=Secret("sim-key"), site_id="demo-site",
        retry=RetryPolicy.no_wait(), timeouts=Timeouts(connect=1, default=2, chat=3), observer=records.append,
    ) as client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.list_sessions()
    assert not info.value.maybe_processed and info.value.status is None
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert [(r.attempt, r.error) for r in records] == [(n, "UppzyUnavailable") for n in (1, 2, 3, 4)]


async def test_connection_refused_submit_is_retried_because_nothing_was_sent() -> None:
    """A submit that never reached the server is safe to send again, so it is retried too."""
    records: list[CallRecord] = []
    async with UppzyClient(
        base_url=f"http://127.0.0.1:{free_port()}/api/v1", api_key=Secret("sim-key"), site_id="demo-site",
        retry=RetryPolicy.no_wait(attempts=2), observer=records.append,
    ) as client:
        with pytest.raises(UppzyUnavailable):
            await client.submit("s-1", "hello")
    assert [r.attempt for r in records] == [1, 2]


async def test_observer_sees_every_attempt(make_uppzy: MakeClient, sim: Simulator) -> None:
    """The observer gets one CallRecord per HTTP attempt with endpoint, status and error class."""
    records: list[CallRecord] = []
    client = make_uppzy(observer=records.append)
    sim.inject("site", 502)
    await client.site()
    assert [(r.endpoint, r.status, r.attempt, r.error) for r in records] == [
        ("site", 502, 1, "UppzyUnavailable"), ("site", 200, 2, None),
    ]


# ---- failures the simulator cannot produce (httpx.MockTransport at the same boundary) -------------------------


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: object) -> UppzyClient:
    """A client whose HTTP goes to `handler` instead of the network."""
    return UppzyClient(
        base_url="http://uppzy.test/api/v1", api_key=Secret("sim-key"), site_id="demo-site",
        retry=RetryPolicy.no_wait(), transport=httpx.MockTransport(handler), **kwargs,  # type: ignore[arg-type]
    )


async def test_connection_reset_mid_chat_is_not_retried() -> None:
    """A connection dropped after the chat was sent raises UppzyUnavailable marked maybe-processed, sent once."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ReadError("connection reset by peer", request=request)

    async with mock_client(handler) as client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.chat("s-1", "hello")
    assert info.value.maybe_processed
    assert len(seen) == 1
    assert seen[0].headers["X-API-Key"] == "sim-key"


async def test_connection_reset_mid_poll_is_retried() -> None:
    """A status poll whose connection drops is retried because reading twice is harmless."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) == 1:
            raise httpx.RemoteProtocolError("server disconnected without a response", request=request)
        return httpx.Response(200, json={"request_id": "req_1", "session_id": "s-1", "status": "completed",
                                         "answer": "hi"})

    async with mock_client(handler) as client:
        status = await client.status("req_1")
    assert status.answer == "hi" and len(seen) == 2


async def test_html_error_page_is_unavailable_and_retried() -> None:
    """A 502 with an HTML body (a proxy error page) raises UppzyUnavailable after the retries."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(502, text="<html><body>Bad gateway</body></html>", headers={"Content-Type": "text/html"})

    async with mock_client(handler) as client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.site()
    assert info.value.status == 502 and info.value.server_error is None
    assert calls == ["/api/v1/m2m/sites/demo-site"] * 4


async def test_unreadable_success_body_on_chat_raises_and_is_not_retried() -> None:
    """A 200 whose body is not a JSON object is an error, never an empty answer, and chat is not resent."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, text="<html>maintenance</html>")

    async with mock_client(handler) as client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.chat("s-1", "hello")
    assert info.value.maybe_processed and info.value.status == 200
    assert len(calls) == 1


async def test_unreadable_success_body_on_read_is_retried() -> None:
    """A read answered 200 with a JSON list instead of an object is retried, then raises UppzyUnavailable."""
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json=["not", "an", "object"])

    async with mock_client(handler) as client:
        with pytest.raises(UppzyUnavailable):
            await client.list_sessions()
    assert len(calls) == 4


async def test_empty_success_body_is_accepted() -> None:
    """A 2xx with an empty body (e.g. 204 on close) counts as success."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)

    async with mock_client(handler) as client:
        await client.close_session("s-1")


async def test_ids_are_url_encoded_in_paths() -> None:
    """Site and request ids are percent-encoded as single path segments, never reformatted."""
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.raw_path.decode())
        return httpx.Response(200, json={"status": "pending"})

    async with mock_client(handler) as client:
        await client.status("req/../x y", site_id="site/1")
    assert paths == ["/api/v1/m2m/sites/site%2F1/chat/requests/req%2F..%2Fx%20y"]


async def test_proxy_environment_is_ignored(monkeypatch: pytest.MonkeyPatch, uppzy: UppzyClient) -> None:
    """HTTP(S)_PROXY in the environment does not divert the client (it talks to the configured base URL)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    assert (await uppzy.site())["id"] == "demo-site"


# ---- the key never leaks --------------------------------------------------------------------------------------


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every log record at DEBUG, including stamina's and httpx's own loggers."""
    caplog.set_level(logging.DEBUG)
    for name in ("stamina", "httpx", "httpcore", "core.uppzy", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_key_hidden(exc: BaseException, client: UppzyClient, caplog: pytest.LogCaptureFixture) -> None:
    """The key is absent from logs (text and every record attribute), the exception chain and the client repr."""
    texts = [caplog.text, repr(client), "".join(traceback.format_exception(exc))]
    link: BaseException | None = exc
    while link is not None:
        texts += [str(link), repr(link), repr(vars(link))]
        link = link.__cause__ or link.__context__
    texts += [repr(vars(record)) for record in caplog.records]
    for text in texts:
        assert SECRET_KEY not in text
    assert caplog.records, "nothing was logged, so the check proved nothing"


async def test_key_hidden_on_auth_error(
    make_uppzy: MakeClient, sim: Simulator, debug_logs: pytest.LogCaptureFixture
) -> None:
    """A 401 for a wrong key leaves no trace of that key in logs, the error or the client."""
    client = make_uppzy(api_key=Secret(SECRET_KEY))
    with pytest.raises(UppzyAuthError) as info:
        await client.list_sessions()
    assert_key_hidden(info.value, client, debug_logs)


async def test_key_hidden_across_retries(
    make_sim: MakeSim, make_uppzy: MakeClient, debug_logs: pytest.LogCaptureFixture
) -> None:
    """Retried 503s (logged by the client and by stamina) never show the key."""
    keyed = await make_sim(api_key=SECRET_KEY)
    client = make_uppzy(base_url=keyed.base_url, api_key=Secret(SECRET_KEY))
    keyed.inject("sessions", 503, times=10)
    with pytest.raises(UppzyUnavailable) as info:
        await client.list_sessions()
    assert len(keyed.calls("sessions")) == 4
    assert "stamina.retry_scheduled" in debug_logs.text
    assert_key_hidden(info.value, client, debug_logs)
    assert SECRET_KEY not in repr(keyed.requests)


async def test_key_hidden_on_timeout(
    make_sim: MakeSim, make_uppzy: MakeClient, debug_logs: pytest.LogCaptureFixture
) -> None:
    """A timed-out submit and its chained TimeoutError never show the key."""
    keyed = await make_sim(api_key=SECRET_KEY)
    client = make_uppzy(base_url=keyed.base_url, api_key=Secret(SECRET_KEY), timeouts=SHORT)
    keyed.inject("chat_async", stall=0.4)
    with pytest.raises(UppzyTimeout) as info:
        await client.submit("s-1", "hello")
    assert_key_hidden(info.value, client, debug_logs)
    await wait_for_calls(keyed, "chat_async", 1)


async def test_key_hidden_on_connection_failure(debug_logs: pytest.LogCaptureFixture) -> None:
    """A refused connection's chained httpx error carries no request (and so no headers) and no key."""
    client = UppzyClient(base_url=f"http://127.0.0.1:{free_port()}/api/v1", api_key=Secret(SECRET_KEY),
                         site_id="demo-site", retry=RetryPolicy.no_wait(attempts=2))
    async with client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.site()
    assert_key_hidden(info.value, client, debug_logs)


async def test_key_hidden_on_mid_request_failure(debug_logs: pytest.LogCaptureFixture) -> None:
    """A transport error raised with the request attached is scrubbed before it is chained to our error."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    client = UppzyClient(base_url="http://uppzy.test/api/v1", api_key=Secret(SECRET_KEY), site_id="demo-site",
                         retry=RetryPolicy.no_wait(attempts=2), transport=httpx.MockTransport(handler))
    async with client:
        with pytest.raises(UppzyUnavailable) as info:
            await client.site()
    cause = info.value.__cause__
    assert isinstance(cause, httpx.ReadError)
    with pytest.raises(RuntimeError):
        _ = cause.request  # the request (and its X-API-Key header) was dropped
    assert_key_hidden(info.value, client, debug_logs)
