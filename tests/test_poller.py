"""The poll scheduler: one loop for every pending request, a hard status-call budget, learned timing."""

from __future__ import annotations

import asyncio
import time

from core.latency import LatencyModel
from core.poller import PendingRequest, PollScheduler
from core.uppzy import RequestStatus, UppzyClient
from simulator import Simulator


def test_latency_model_learns_and_scores() -> None:
    """Quantiles follow what was observed; a poll past the slowest answer seen is almost sure to pay."""
    model = LatencyModel()
    for i in range(100):
        model.observe(2.0 + 4.0 * i / 99)
    assert 2.0 <= model.quantile(0.1) <= 2.6
    assert model.hazard(0.0, 1.0) == 0.0
    assert model.hazard(3.0, 7.0) == 1.0
    assert 0.0 < model.hazard(3.0, 4.0) < 1.0


async def test_budget_is_never_exceeded_and_spent_where_answers_wait(sim: Simulator, uppzy: UppzyClient) -> None:
    """Under a binding budget the poller stays within it and needs about one poll per answer."""
    sim.config.latency = (0.2, 0.5)
    done: dict[int, float] = {}
    finished = asyncio.Event()
    count = 150

    async def on_done(item: PendingRequest, status: RequestStatus) -> None:
        assert status.status == "completed"
        done[item.turn_id] = time.monotonic()
        if len(done) == count:
            finished.set()

    async def on_expired(item: PendingRequest, why: str) -> None:
        raise AssertionError(f"request {item.turn_id} expired: {why}")

    rate = 100.0
    poller = PollScheduler(uppzy=uppzy, on_done=on_done, on_expired=on_expired, rate=rate, interval=0.2,
                           latency=LatencyModel(prior=(0.2, 0.3, 0.4, 0.5) * 5), first_poll_floor=0.05)
    now = time.time()
    for turn_id in range(count):
        sub = await uppzy.submit(f"s{turn_id}", "how do returns work?")
        poller.add(turn_id, sub.request_id, "demo-site", submitted_at=now, deadline=now + 60)
    stop = asyncio.Event()
    runner = asyncio.create_task(poller.run(stop))
    await asyncio.wait_for(finished.wait(), 15)
    stop.set()
    await runner
    stamps = sorted(r.at for r in sim.calls("chat_status"))
    worst = max(sum(1 for t in stamps if s <= t < s + 1.0) for s in stamps)
    assert worst <= rate + poller.budget.burst + 2
    assert len(stamps) / count < 1.6  # nearly every poll found an answer waiting
