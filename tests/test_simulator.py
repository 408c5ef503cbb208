"""Contract tests of the simulator over raw HTTP: it must behave like the documented Uppzy M2M API."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from core.retry import parse_retry_after
from simulator import Simulator
from simulator.knowledge import KnowledgeBase
from simulator.server import MAX_MESSAGE_CHARS, http_date
from tests.fault_support import wait_until

MakeSim = Callable[..., Awaitable[Simulator]]
SITE = "m2m/sites/demo-site"


def raw_client(sim: Simulator, key: str | None = "sim-key") -> httpx.AsyncClient:
    """A plain httpx client on the simulator's base URL, sending `key` as X-API-Key when given."""
    headers = {"X-API-Key": key} if key is not None else {}
    return httpx.AsyncClient(base_url=sim.base_url + "/", headers=headers, trust_env=False, timeout=5)


@pytest.fixture
async def raw(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    """Raw HTTP to the shared simulator with the right key."""
    async with raw_client(sim) as client:
        yield client


async def submit(raw: httpx.AsyncClient, message: str = "hello", session_id: str = "s-1") -> str:
    """Submit an async chat and return its request id."""
    response = await raw.post(f"{SITE}/chat/async", json={"session_id": session_id, "message": message})
    assert response.status_code == 202
    return response.json()["request_id"]


# ---- auth and validation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", f"{SITE}/chat"), ("POST", f"{SITE}/chat/async"), ("GET", f"{SITE}/chat/requests/req_1"),
     ("POST", f"{SITE}/chat/feedback"), ("POST", f"{SITE}/chat/session/close"), ("GET", f"{SITE}/sessions"),
     ("GET", SITE), ("GET", "m2m/tenants/demo-tenant/limits")],
)
@pytest.mark.parametrize("key", [None, "wrong-key", ""])
async def test_every_endpoint_needs_the_key(sim: Simulator, method: str, path: str, key: str | None) -> None:
    """Every endpoint answers 401 invalid_api_key when X-API-Key is missing or wrong."""
    async with raw_client(sim, key) as client:
        response = await client.request(method, path, json={"session_id": "s", "message": "m"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_api_key"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"session_id": "s-1"}, "message is required"),
        ({"session_id": "s-1", "message": "   "}, "message is required"),
        ({"message": "hi"}, "session_id is required"),
        ({"session_id": 5, "message": "hi"}, "session_id is required"),
        ({"session_id": "s-1", "message": "hi", "email": 5}, "email must be a string"),
        ({"session_id": "s-1", "message": "x" * (MAX_MESSAGE_CHARS + 1)}, "longer than"),
        (["not", "an", "object"], "invalid payload"),
    ],
)
@pytest.mark.parametrize("endpoint", ["chat", "chat/async"])
async def test_chat_rejects_bad_payloads(
    raw: httpx.AsyncClient, sim: Simulator, body: object, error: str, endpoint: str
) -> None:
    """Sync and async chat answer 400 with an error text for a missing or malformed field, creating nothing."""
    response = await raw.post(f"{SITE}/{endpoint}", json=body)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert sim.chats == {} and sim.sessions == {}


async def test_chat_rejects_a_body_that_is_not_json(raw: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 400 invalid payload."""
    response = await raw.post(f"{SITE}/chat/async", content=b"message=hi", headers={"Content-Type": "text/plain"})
    assert response.status_code == 400 and response.json() == {"error": "invalid payload"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"request_id": "r", "feedback": "good"}, "session_id is required"),
        ({"session_id": "s", "feedback": "good"}, "request_id is required"),
        ({"session_id": "s", "request_id": "r"}, "feedback is required"),
        ({"session_id": "s", "request_id": "r", "feedback": "meh"}, "good"),
    ],
)
async def test_feedback_rejects_missing_fields_and_bad_values(raw: httpx.AsyncClient, body: dict, error: str) -> None:
    """Feedback needs session_id, request_id and a feedback of exactly good or bad (else 400)."""
    response = await raw.post(f"{SITE}/chat/feedback", json=body)
    assert response.status_code == 400
    assert error in response.json()["error"]


async def test_close_requires_session_id(raw: httpx.AsyncClient) -> None:
    """Session close without a session_id is 400 'session_id is required'."""
    response = await raw.post(f"{SITE}/chat/session/close", json={})
    assert response.status_code == 400 and response.json() == {"error": "session_id is required"}


async def test_sessions_rejects_a_non_numeric_limit(raw: httpx.AsyncClient) -> None:
    """The sessions list answers 400 when limit is not a number."""
    response = await raw.get(f"{SITE}/sessions", params={"limit": "lots"})
    assert response.status_code == 400


# ---- not found --------------------------------------------------------------------------------------------------


async def test_unknown_site_is_404(raw: httpx.AsyncClient) -> None:
    """Any call on a site the key does not know is 404 'site not found'."""
    for response in (
        await raw.post("m2m/sites/other/chat/async", json={"session_id": "s", "message": "hi"}),
        await raw.get("m2m/sites/other"),
        await raw.get("m2m/sites/other/sessions"),
    ):
        assert response.status_code == 404 and response.json() == {"error": "site not found"}


async def test_unknown_request_is_404(raw: httpx.AsyncClient) -> None:
    """Polling or rating an unknown request id is 404 'request not found'."""
    assert (await raw.get(f"{SITE}/chat/requests/req_nope")).json() == {"error": "request not found"}
    response = await raw.post(f"{SITE}/chat/feedback",
                              json={"session_id": "s", "request_id": "req_nope", "feedback": "good"})
    assert response.status_code == 404


async def test_request_of_another_session_cannot_be_rated(raw: httpx.AsyncClient) -> None:
    """Feedback naming the right request but the wrong session is 404."""
    request_id = await submit(raw)
    response = await raw.post(f"{SITE}/chat/feedback",
                              json={"session_id": "someone-else", "request_id": request_id, "feedback": "good"})
    assert response.status_code == 404


async def test_unknown_tenant_and_route_are_404(raw: httpx.AsyncClient, sim: Simulator) -> None:
    """An unknown tenant or an unknown path answers 404 and is recorded as such."""
    assert (await raw.get("m2m/tenants/other/limits")).status_code == 404
    assert (await raw.get("m2m/nothing/here")).status_code == 404
    assert [c.status for c in sim.calls()] == [404, 404]
    assert sim.calls()[1].endpoint == "unknown"


# ---- chat lifecycle ---------------------------------------------------------------------------------------------


async def test_sync_chat_answers_200_after_the_latency(make_sim: MakeSim) -> None:
    """Sync chat holds the connection for the configured latency and answers 200 with answer and confidence."""
    slow = await make_sim(latency=(0.2, 0.2))
    async with raw_client(slow) as client:
        started = time.monotonic()
        response = await client.post(f"{SITE}/chat", json={"session_id": "s-1", "message": "shipping times?"})
    assert time.monotonic() - started >= 0.19
    assert response.status_code == 200
    data = response.json()
    assert data["session_id"] == "s-1" and data["request_id"].startswith("req_")
    assert data["status"] == "completed" and data["answer"]
    assert isinstance(data["confidence_score"], int) and 0 <= data["confidence_score"] <= 100
    assert data["confidence_level"] in {"low", "medium", "high"}


async def test_async_request_goes_from_pending_to_completed_after_latency(make_sim: MakeSim) -> None:
    """Submit answers 202 pending at once; polls say pending, then processing, then completed once latency passed."""
    slow = await make_sim(latency=(0.3, 0.3))
    async with raw_client(slow) as client:
        started = time.monotonic()
        response = await client.post(f"{SITE}/chat/async", json={"session_id": "s-1", "message": "refund?"})
        assert response.status_code == 202
        submitted = response.json()
        assert submitted["status"] == "pending" and submitted["session_id"] == "s-1"
        assert time.monotonic() - started < 0.2
        path = f"{SITE}/chat/requests/{submitted['request_id']}"
        first = (await client.get(path)).json()
        second = (await client.get(path)).json()
        assert (first["status"], second["status"]) == ("pending", "processing")
        assert "answer" not in second
        assert slow.state_of(submitted["request_id"]) == "pending"
        polled: list[str] = []

        async def completed() -> dict[str, Any] | None:
            data = (await client.get(path)).json()
            polled.append(data["status"])
            return data if data["status"] == "completed" else None

        done = await wait_until(completed, timeout=2.0, what=lambda: f"completed; polls said {polled}")
        took = time.monotonic() - started
    assert took >= 0.3, f"completed after {took:.3f}s, before its 0.3 s latency"
    assert set(polled[:-1]) <= {"processing"}
    assert done["status"] == "completed" and done["request_id"] == submitted["request_id"]
    assert "Returns" in done["answer"] and done["confidence_level"] and done["confidence_score"]


async def test_failed_async_request_reports_error(make_sim: MakeSim) -> None:
    """With fail_rate=1.0 every async request ends failed with an error text and no answer."""
    failing = await make_sim(fail_rate=1.0)
    async with raw_client(failing) as client:
        request_id = await submit(client)
        data = (await client.get(f"{SITE}/chat/requests/{request_id}")).json()
    assert data["status"] == "failed" and data["error"] and "answer" not in data


async def test_failed_sync_chat_is_a_502_with_request_id(make_sim: MakeSim) -> None:
    """A sync chat whose answer generation fails answers 502 and names the request."""
    failing = await make_sim(fail_rate=1.0)
    async with raw_client(failing) as client:
        response = await client.post(f"{SITE}/chat", json={"session_id": "s-1", "message": "hi"})
    assert response.status_code == 502 and response.json()["request_id"].startswith("req_")


async def test_scripted_reply_overrides_knowledge(raw: httpx.AsyncClient, sim: Simulator) -> None:
    """sim.script replaces answer and confidence for questions containing its text (case-insensitive)."""
    sim.script("ticket", "Your ticket is #42.", score=12, level="low")
    data = (await raw.post(f"{SITE}/chat", json={"session_id": "s", "message": "Where is my TICKET?"})).json()
    assert (data["answer"], data["confidence_score"], data["confidence_level"]) == ("Your ticket is #42.", 12, "low")


async def test_feedback_rules(make_sim: MakeSim) -> None:
    """Feedback is 409 until completed, then ok with a timestamp once, then ok without one (first rating kept)."""
    slow = await make_sim(latency=(30, 30))
    async with raw_client(slow) as client:
        request_id = await submit(client)
        body = {"session_id": "s-1", "request_id": request_id, "feedback": "bad"}
        early = await client.post(f"{SITE}/chat/feedback", json=body)
        assert early.status_code == 409
        slow.complete_now()
        first = await client.post(f"{SITE}/chat/feedback", json=body)
        again = await client.post(f"{SITE}/chat/feedback", json={**body, "feedback": "good"})
    assert first.status_code == 200
    assert first.json()["status"] == "ok" and first.json()["feedback"] == "bad"
    assert first.json()["request_id"] == request_id and first.json()["feedback_submitted_at"].endswith("Z")
    assert again.status_code == 200 and again.json() == {"status": "ok", "request_id": request_id, "feedback": "bad"}


async def test_feedback_on_failed_request_is_409(make_sim: MakeSim) -> None:
    """A failed request cannot be rated (409)."""
    failing = await make_sim(fail_rate=1.0)
    async with raw_client(failing) as client:
        request_id = await submit(client)
        response = await client.post(f"{SITE}/chat/feedback",
                                     json={"session_id": "s-1", "request_id": request_id, "feedback": "good"})
    assert response.status_code == 409


async def test_close_is_idempotent_and_closed_session_refuses_chat(raw: httpx.AsyncClient) -> None:
    """Close answers ok every time (even for a never-used id); chatting on a closed session is 409."""
    await submit(raw, session_id="s-1")
    for session_id in ("s-1", "s-1", "never-used"):
        response = await raw.post(f"{SITE}/chat/session/close", json={"session_id": session_id})
        assert response.status_code == 200 and response.json() == {"status": "ok"}
    for session_id in ("s-1", "never-used"):
        for endpoint in ("chat", "chat/async"):
            response = await raw.post(f"{SITE}/{endpoint}", json={"session_id": session_id, "message": "hi"})
            assert response.status_code == 409
    assert (await raw.post(f"{SITE}/chat/async", json={"session_id": "s-2", "message": "hi"})).status_code == 202


async def test_sessions_list_shape_and_email_filter(raw: httpx.AsyncClient) -> None:
    """The sessions list carries id, created_at, updated_at, closed_at and message_count, filterable by email."""
    await raw.post(f"{SITE}/chat", json={"session_id": "s-ann", "message": "hi", "email": "ann@example.com"})
    await raw.post(f"{SITE}/chat", json={"session_id": "s-ann", "message": "again"})
    await raw.post(f"{SITE}/chat", json={"session_id": "s-bob", "message": "hi", "email": "bob@example.com"})
    await raw.post(f"{SITE}/chat/session/close", json={"session_id": "s-bob"})
    data = (await raw.get(f"{SITE}/sessions")).json()
    assert data["total"] == 2
    rows = {row["id"]: row for row in data["sessions"]}
    for row in rows.values():
        assert {"id", "created_at", "updated_at", "closed_at", "message_count"} <= set(row)
    assert rows["s-ann"]["message_count"] == 2 and rows["s-ann"]["closed_at"] is None
    assert rows["s-bob"]["message_count"] == 1 and rows["s-bob"]["closed_at"]
    only_ann = (await raw.get(f"{SITE}/sessions", params={"email": "ann@example.com"})).json()["sessions"]
    assert [row["id"] for row in only_ann] == ["s-ann"]
    assert len((await raw.get(f"{SITE}/sessions", params={"limit": "1"})).json()["sessions"]) == 1


async def test_site_and_tenant_limits(raw: httpx.AsyncClient) -> None:
    """The site read and the tenant limits check answer 200 with their ids."""
    site = await raw.get(SITE)
    limits = await raw.get("m2m/tenants/demo-tenant/limits")
    assert site.status_code == 200 and site.json()["id"] == "demo-site"
    assert limits.status_code == 200 and limits.json()["tenant_id"] == "demo-tenant"


# ---- knowledge base ---------------------------------------------------------------------------------------------


def test_knowledge_base_is_confident_about_returns() -> None:
    """'How do returns work' matches the returns entry with a confident (not low) score; more matches score higher."""
    kb = KnowledgeBase()
    reply = kb.answer("How do returns work?")
    assert "Returns are accepted" in reply.answer
    assert reply.level != "low" and reply.score >= 70
    stronger = kb.answer("How do returns and refunds work?")
    assert stronger.level == "high" and stronger.score > reply.score


def test_knowledge_base_is_unsure_about_gibberish() -> None:
    """A question matching nothing gets a low-confidence 'not sure' reply."""
    reply = KnowledgeBase().answer("xq zzv plorf?")
    assert reply.level == "low" and reply.score < 40


async def test_simulator_uses_the_knowledge_base(raw: httpx.AsyncClient) -> None:
    """Answers over HTTP carry the knowledge base's confidence: returns question above gibberish."""
    good = (await raw.post(f"{SITE}/chat", json={"session_id": "s", "message": "how do returns work"})).json()
    bad = (await raw.post(f"{SITE}/chat", json={"session_id": "s", "message": "xq zzv plorf"})).json()
    assert good["confidence_level"] != "low" and bad["confidence_level"] == "low"
    assert good["confidence_score"] > bad["confidence_score"]


# ---- fault knobs ------------------------------------------------------------------------------------------------


async def test_error_rate_one_gives_5xx(make_sim: MakeSim) -> None:
    """error_rate=1.0 answers every call with a 500, 502 or 503."""
    broken = await make_sim(error_rate=1.0)
    async with raw_client(broken) as client:
        statuses = {(await client.get(SITE)).status_code for _ in range(12)}
    assert statuses <= {500, 502, 503} and statuses


async def test_rate_limit_rate_one_gives_429_with_retry_after(make_sim: MakeSim) -> None:
    """rate_limit_rate=1.0 answers 429 with the configured Retry-After."""
    limited = await make_sim(rate_limit_rate=1.0, retry_after=2.0)
    async with raw_client(limited) as client:
        response = await client.get(SITE)
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"


async def test_rate_limit_without_retry_after_omits_the_header(make_sim: MakeSim) -> None:
    """With retry_after=None the 429 carries no Retry-After header."""
    limited = await make_sim(rate_limit_rate=1.0, retry_after=None)
    async with raw_client(limited) as client:
        response = await client.get(SITE)
    assert response.status_code == 429 and "Retry-After" not in response.headers


async def test_status_rate_limit_answers_429_above_the_hidden_limit(make_sim: MakeSim) -> None:
    """status_rate_limit=3: of ten status calls at once, three are answered and the rest get 429 with a whole-second
    Retry-After; answered calls never exceed three in a one-second window; other endpoints are not limited."""
    limited = await make_sim(status_rate_limit=3.0)
    async with raw_client(limited) as client:
        rid = await submit(client)
        responses = await asyncio.gather(*(client.get(f"{SITE}/chat/requests/{rid}") for _ in range(10)))
        others = [(await client.get(SITE)).status_code for _ in range(5)]
    assert others == [200] * 5
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 3 and codes.count(429) == 7
    assert {r.headers["Retry-After"] for r in responses if r.status_code == 429} == {"1"}
    answered = sorted(r.at for r in limited.calls("chat_status") if r.status == 200)
    assert max(sum(1 for t in answered if s <= t < s + 1.0) for s in answered) <= 3


async def test_fault_endpoints_limit_random_faults(make_sim: MakeSim) -> None:
    """With fault_endpoints set, random faults hit only those endpoints."""
    partial = await make_sim(error_rate=1.0, fault_endpoints=frozenset({"chat_async"}))
    async with raw_client(partial) as client:
        assert (await client.get(SITE)).status_code == 200
        response = await client.post(f"{SITE}/chat/async", json={"session_id": "s", "message": "hi"})
    assert response.status_code >= 500


async def test_stall_rate_delays_the_answer(make_sim: MakeSim) -> None:
    """stall_rate=1.0 holds each call for stall_seconds before answering normally."""
    stalling = await make_sim(stall_rate=1.0, stall_seconds=0.2)
    async with raw_client(stalling) as client:
        started = time.monotonic()
        response = await client.get(SITE)
    assert response.status_code == 200 and time.monotonic() - started >= 0.19


async def test_faults_come_after_auth(make_sim: MakeSim) -> None:
    """A wrong key is 401 even when faults are configured: auth is checked first."""
    broken = await make_sim(error_rate=1.0)
    async with raw_client(broken, "wrong") as client:
        assert (await client.get(SITE)).status_code == 401


async def test_injected_faults_hit_the_next_calls_only(raw: httpx.AsyncClient, sim: Simulator) -> None:
    """inject(endpoint, status, times=n) answers the next n calls to that endpoint with status, then normally."""
    sim.inject("site", 503, times=2)
    sim.inject("sessions", 429, retry_after="7")
    statuses = [(await raw.get(SITE)).status_code for _ in range(3)]
    limited = await raw.get(f"{SITE}/sessions")
    assert statuses == [503, 503, 200]
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
    assert (await raw.get(f"{SITE}/sessions")).status_code == 200


async def test_injected_stall_delays_one_call(raw: httpx.AsyncClient, sim: Simulator) -> None:
    """inject(endpoint, stall=s) holds the next call for s seconds, then answers it normally."""
    sim.inject("site", stall=0.2)
    started = time.monotonic()
    assert (await raw.get(SITE)).status_code == 200
    assert time.monotonic() - started >= 0.19


async def test_seed_makes_latency_repeatable(make_sim: MakeSim) -> None:
    """Two simulators with the same seed draw the same answer latencies; another seed draws different ones."""

    async def latencies(seed: int) -> list[float]:
        seeded = await make_sim(seed=seed, latency=(0.6, 2.0))
        async with raw_client(seeded) as client:
            ids = [await submit(client, session_id=f"s-{n}") for n in range(4)]
        recorded = seeded.calls("chat_async")
        return [seeded.chats[rid].ready_at - call.at for rid, call in zip(ids, recorded, strict=True)]

    first, second, other = await latencies(7), await latencies(7), await latencies(8)
    assert first == pytest.approx(second, abs=0.02)
    assert all(0.55 <= value <= 2.0 for value in first)
    assert first != pytest.approx(other, abs=0.02)


async def test_stop_does_not_wait_for_a_long_stall(make_sim: MakeSim) -> None:
    """stop() returns promptly even while a call is stalled for far longer."""
    stalled = await make_sim()
    stalled.inject("site", stall=30)
    client = raw_client(stalled)
    pending = asyncio.create_task(client.get(SITE))
    await wait_until(lambda: not stalled.faults, what="the call to take its stall")  # it is stalling from now on
    started = time.monotonic()
    await stalled.stop()
    assert time.monotonic() - started < 2.0
    pending.cancel()
    await asyncio.gather(pending, return_exceptions=True)
    await client.aclose()


# ---- recording --------------------------------------------------------------------------------------------------


async def test_recorded_requests_never_hold_the_key(make_sim: MakeSim) -> None:
    """Recorded requests keep method, path, endpoint, status, body and query, but never the API key."""
    key = "sk-live-SECRET-1234567890"
    keyed = await make_sim(api_key=key)
    async with raw_client(keyed, key) as client:
        await client.post(f"{SITE}/chat/async", json={"session_id": "s-1", "message": "hi"})
        await client.get(f"{SITE}/sessions", params={"email": "a@example.com"})
    submit_call, list_call = keyed.calls()
    assert (submit_call.method, submit_call.endpoint, submit_call.status) == ("POST", "chat_async", 202)
    assert submit_call.body == {"session_id": "s-1", "message": "hi"}
    assert list_call.query == {"email": "a@example.com"}
    assert key not in repr(keyed.requests)


def test_http_date_is_a_parseable_retry_after() -> None:
    """http_date(n) yields an IMF-fixdate that parse_retry_after reads as about n seconds."""
    value = http_date(10)
    assert value.endswith(" GMT")
    assert 8.5 <= (parse_retry_after(value) or 0) <= 10.0
