"""Platforms' progress rule with a platform whose calls we hold: what is shown is taken away, never twice or never."""

from __future__ import annotations

import asyncio

from core.backoff import Backoff
from core.models import ReplyTarget
from core.platforms import Platforms

TARGET = ReplyTarget("stub", "W1", "C1", "C1", "1.0", "U1")


class HeldPlatform:
    """Records show/clear calls; show_working waits until the test lets it return."""

    platform = "stub"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.release = asyncio.Event()
        self.showing = asyncio.Event()

    async def show_working(self, target: ReplyTarget) -> None:
        self.calls.append("show")
        self.showing.set()
        await self.release.wait()

    async def clear_working(self, target: ReplyTarget) -> None:
        self.calls.append("clear")


async def test_an_answer_while_the_indicator_is_on_its_way_still_takes_it_away() -> None:
    """Cleared while the show call is in flight: clear returns at once, and the indicator goes once it landed."""
    platforms, stub = Platforms(Backoff(attempts=0), working_after=0.0), HeldPlatform()
    platforms.add(stub)  # type: ignore[arg-type]
    show = asyncio.create_task(platforms.show_working(TARGET))
    await stub.showing.wait()
    await platforms.clear_working(TARGET)  # does not wait for the show call
    assert stub.calls == ["show"]
    stub.release.set()
    await show
    assert stub.calls == ["show", "clear"]


async def test_an_indicator_cleared_before_its_moment_is_never_shown() -> None:
    """Cleared within the moment: the waiting show ends at once (no timer left running) and calls nothing."""
    platforms, stub = Platforms(Backoff(attempts=0), working_after=60.0), HeldPlatform()
    platforms.add(stub)  # type: ignore[arg-type]
    show = asyncio.create_task(platforms.show_working(TARGET))
    await asyncio.sleep(0)  # let it start waiting
    await platforms.clear_working(TARGET)
    await asyncio.wait_for(show, 1.0)
    assert stub.calls == []


async def test_an_indicator_this_process_did_not_show_is_cleared_the_old_way() -> None:
    """After a restart (or on another replica) the shown ⏳ is unknown here: clearing it still asks the platform."""
    platforms, stub = Platforms(Backoff(attempts=0), working_after=60.0), HeldPlatform()
    platforms.add(stub)  # type: ignore[arg-type]
    await platforms.clear_working(TARGET)
    assert stub.calls == ["clear"]
