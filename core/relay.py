"""The relay: core's Inbound port over its components, and their shared life (start, resume, stop)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from core import messages
from core.conversations import Conversations, Status
from core.delivery import Delivery
from core.feedback import Feedback
from core.intake import Intake
from core.membership import Membership
from core.models import (
    Accepted,
    FeedbackEvent,
    FeedbackResult,
    HumanRequest,
    HumanResult,
    Ignored,
    InboundMessage,
    NoticeKind,
    Rejected,
    ReplyTarget,
    Turn,
    TurnState,
)
from core.platforms import Platforms
from core.poll_lanes import PollLanes
from core.ports import ChatPlatform, EndResult, Store
from core.reaper import IdleReaper
from core.submission import Submitter
from core.supervisor import TaskSupervisor
from core.uppzy_pool import Connections
from core.uppzy_types import SessionInfo
from core.workspace import GENERIC_EMOJI, WorkspaceSettings, WorkspaceSettingsService

__all__ = ["Components", "EndResult", "Relay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Components:
    """Everything the relay is made of; built and wired only by the composition root (bots/runner.py)."""

    store: Store
    workspaces: WorkspaceSettingsService
    platforms: Platforms
    intake: Intake
    submission: Submitter
    delivery: Delivery
    feedback: Feedback
    conversations: Conversations
    poller: PollLanes
    reaper: IdleReaper
    membership: Membership
    tasks: TaskSupervisor
    answer_timeout: float
    recovery_grace: float
    connections: Connections
    clock: Callable[[], float] = time.time


class Relay:
    """Implements core.ports.Inbound by delegating to one component per job; owns start, recovery and stop."""

    def __init__(self, parts: Components) -> None:
        self.parts = parts
        self._stop = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self._reaping = True
        self._watching = False
        self._rejoin: asyncio.Task[None] | None = None
        self._stopping = False

    # Read-only views for the composition root, benchmarks and tests; adapters use only the Inbound port.
    @property
    def store(self) -> Store:
        """The store the relay works on."""
        return self.parts.store

    @property
    def workspaces(self) -> WorkspaceSettingsService:
        """Per-workspace settings."""
        return self.parts.workspaces

    @property
    def poller(self) -> PollLanes:
        """The status-poll schedulers (one per Uppzy key)."""
        return self.parts.poller

    @property
    def connections(self) -> Connections:
        """Which Uppzy key and site each workspace uses (`connections.credentials.invalidate` after a connect)."""
        return self.parts.connections

    @property
    def reaper(self) -> IdleReaper:
        """The idle-session reaper."""
        return self.parts.reaper

    # ---- the Inbound port ----

    def register(self, platform: ChatPlatform) -> None:
        """Attach an adapter; its `platform` name routes answers back to it (late joiners get their backlog)."""
        self.parts.platforms.add(platform)
        good, bad = getattr(platform, "feedback_emoji", GENERIC_EMOJI)
        self.parts.workspaces.set_platform_emoji(platform.platform, good, bad)
        if self._loops:
            self.parts.tasks.spawn(self.parts.delivery.backlog(platform.platform), name="backlog")

    async def handle_message(self, msg: InboundMessage) -> Accepted | Rejected | Ignored:
        """Route, record (de-duplicated by event key) and start work on a message; returns at once."""
        return await self.parts.intake.handle_message(msg)

    async def handle_feedback(self, event: FeedbackEvent) -> FeedbackResult:
        """Turn a reaction or button on an answer into Uppzy feedback, at most once per answer."""
        return await self.parts.feedback.handle(event)

    async def request_human(self, request: HumanRequest) -> HumanResult:
        """Ask the workspace's escalation target to look at an answer ("Talk to a human")."""
        return await self.parts.feedback.request_human(request)

    async def end_conversation(self, target: ReplyTarget) -> EndResult:
        """Close the caller's session for this conversation now."""
        return await self.parts.conversations.end(target)

    async def list_sessions(self, platform: str, workspace_id: str, email: str | None,
                            user_id: str | None = None) -> list[SessionInfo]:
        """Uppzy's session list for a workspace's site: by email, else this user's sessions this workspace opened."""
        return await self.parts.conversations.list(platform, workspace_id, email, user_id)

    async def status_report(self, platform: str, workspace_id: str) -> Status:
        """Settings, Uppzy connectivity and counts for one workspace."""
        return await self.parts.conversations.status(platform, workspace_id)

    async def settings(self, platform: str, workspace_id: str) -> WorkspaceSettings:
        """Effective settings of a workspace."""
        return await self.parts.workspaces.get(platform, workspace_id)

    async def describe_settings(self, platform: str, workspace_id: str) -> list[tuple[str, str, str]]:
        """(key, value, help) of every admin setting."""
        return await self.parts.workspaces.describe(platform, workspace_id)

    async def set_setting(self, platform: str, workspace_id: str, key: str, raw: str, *, by: str | None) -> str:
        """Validate and store one setting; returns how it now reads."""
        return await self.parts.workspaces.set(platform, workspace_id, key, raw, by=by)

    async def reset_setting(self, platform: str, workspace_id: str, key: str, *, by: str | None) -> str:
        """Drop an override so the environment default applies again; returns how the default reads."""
        return await self.parts.workspaces.reset(platform, workspace_id, key, by=by)

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str:
        """How the bot listens in one channel."""
        return await self.parts.workspaces.channel_mode(platform, workspace_id, channel_id)

    async def set_channel_mode(self, platform: str, workspace_id: str, channel_id: str, raw: str, *,
                               by: str | None) -> str:
        """Set one channel's mode."""
        return await self.parts.workspaces.set_channel_mode(platform, workspace_id, channel_id, raw, by=by)

    # ---- lifecycle ----

    async def start(self, *, reaper: bool = True) -> None:
        """Resume everything unfinished this process may work on (all of it with one process; with replicas its
        own and what replicas that died left), then start the poller, the redelivery sweep of answers a platform
        refused, the replica lease (with replicas) and the idle reaper (which runs on the leading replica)."""
        parts = self.parts
        self._stop.clear()
        self._stopping = False
        self._reaping = reaper
        parts.intake.stopping = parts.submission.stopping = False
        if not self._watching:  # another replica's admin change must reach this one's caches
            credentials = parts.connections.credentials

            def forget(platform: str | None, workspace_id: str | None) -> None:
                parts.workspaces.forget(platform, workspace_id)
                credentials.forget(platform, workspace_id)  # an uninstall (forget_workspace) took its key too

            await parts.store.watch_settings(forget)
            self._watching = True
        self._resume(await parts.membership.join())
        self._loops.append(asyncio.create_task(parts.poller.run(self._stop), name="uppzy-poller"))
        self._loops.append(asyncio.create_task(parts.delivery.run_sweeps(self._stop), name="redelivery-sweep"))
        self._loops.append(asyncio.create_task(
            parts.membership.run(self._stop, resume=self._resume, lapsed=self._lapsed), name="replica-lease"))
        if reaper:
            self._loops.append(asyncio.create_task(parts.reaper.run(self._stop), name="idle-reaper"))

    def _lapsed(self) -> None:
        """The lease lapsed (this replica stalled): drop in-memory work, then resume only what is still ours."""
        if self._rejoin is None or self._rejoin.done():
            self._rejoin = asyncio.create_task(self._restart(), name="replica-rejoin")

    async def _restart(self) -> None:
        # Posts already made must be recorded before their questions are resumed from the store, or they go twice.
        if not await self.parts.delivery.flush(within=self.parts.membership.lease):
            log.error("rejoining with store writes that could not land: an answer may be posted twice")
        await self._stop_loops(drain=1.5)
        if not self._stopping:  # a shutdown meanwhile wins
            await self.start(reaper=self._reaping)

    async def stop(self, drain: float = 0.0) -> None:
        """Stop loops and in-flight work; every unfinished question stays in the store for the next start.

        With `drain`, submits already on their way to Uppzy get that many seconds to finish first: one cut off
        mid-call may or may not have reached Uppzy, and the next start can only apologise for it. No new submit
        starts once stopping; queued questions wait in the store.
        """
        self._stopping = True
        rejoin, self._rejoin = self._rejoin, None
        if rejoin is not None and rejoin is not asyncio.current_task() and not rejoin.done():
            rejoin.cancel()
            await asyncio.gather(rejoin, return_exceptions=True)
        await self._stop_loops(drain)

    async def _stop_loops(self, drain: float) -> None:
        self._stop.set()
        self.parts.intake.stopping = self.parts.submission.stopping = True
        if drain > 0:
            await self.parts.submission.drain(drain)
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.parts.poller.aclose()  # first: a poll ending now must not spawn work after the cancel below
        for _ in range(3):  # a cancelled task may have spawned another on its way out
            if self.parts.tasks.idle:
                break
            await self.parts.tasks.cancel_all()
        self._loops.clear()

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no question is in flight (the demo's exit and tests)."""
        async with asyncio.timeout(timeout):
            while True:
                if self.parts.tasks.idle and len(self.parts.poller) == 0:
                    if (await self.parts.store.counts()).pending == 0:
                        return
                await asyncio.sleep(0.02)

    def _resume(self, turns: list[Turn]) -> None:
        """Carry on with unfinished questions from the state the store kept (after a restart, or adopted)."""
        parts = self.parts
        if turns:
            log.info("resuming %d unfinished questions", len(turns))
        heads: set[str] = set()
        for turn in turns:
            if turn.state is TurnState.QUEUED:
                heads.add(turn.session_id)
            elif turn.state is TurnState.SUBMITTING:
                # Uppzy may or may not have taken it; resubmitting could ask twice, so say so instead.
                parts.tasks.spawn(parts.delivery.fail(turn, NoticeKind.LOST, messages.LOST_IN_RESTART, kind="lost"))
            elif turn.state is TurnState.PENDING and turn.request_id and turn.submitted_at is not None:
                # After downtime the answer may be waiting at Uppzy: always look at least once before giving up.
                deadline = max(turn.submitted_at + parts.answer_timeout, parts.clock() + parts.recovery_grace)
                parts.tasks.spawn(self._repoll(turn, deadline), name="resume-poll")
            elif turn.state in (TurnState.READY, TurnState.DELIVERING):
                parts.tasks.spawn(parts.delivery.deliver(turn.id, recovering=turn.state is TurnState.DELIVERING))
            elif turn.state is TurnState.NOTIFYING:
                parts.tasks.spawn(parts.delivery.notify_failure(turn))
        for session_id in heads:
            parts.tasks.spawn(parts.intake.advance(session_id))

    async def _repoll(self, turn: Turn, deadline: float) -> None:
        """Poll a question submitted before a restart again, with the key of the site it was asked on."""
        parts = self.parts
        assert turn.request_id is not None and turn.submitted_at is not None
        t = turn.target
        attempt = 0
        while True:  # the store may be away a while (at start, at a lease rejoin): its connection is read there
            try:
                uppzy = await parts.connections.recorded(t.platform, t.workspace_id, turn.site_id)
                break
            except Exception as exc:
                attempt += 1
                if parts.clock() >= deadline:  # never left pending (its session would wait behind it): one notice
                    log.warning("resuming turn=%d: its Uppzy connection could not be read before its deadline (%s)",
                                turn.id, type(exc).__name__)
                    await parts.delivery.fail(turn, NoticeKind.TIMEOUT, messages.TIMED_OUT, kind="timeout")
                    return
                log.warning("resuming turn=%d: its Uppzy connection cannot be read yet (%s)", turn.id,
                            type(exc).__name__)
                await asyncio.sleep(min(30.0, float(attempt)))
        if uppzy is None:  # its workspace was disconnected meanwhile and there is no deployment key
            await parts.delivery.fail(turn, NoticeKind.NOT_CONNECTED, messages.NOT_CONNECTED, kind="not_connected")
            return
        parts.poller.add(turn.id, turn.request_id, turn.site_id, submitted_at=turn.submitted_at, deadline=deadline,
                         creds=uppzy.creds)
