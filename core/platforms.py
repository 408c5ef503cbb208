"""The connected chat platforms by name, and the two ways core talks to them besides answers: notices and progress."""

from __future__ import annotations

import asyncio
import logging

from cachetools import LRUCache

from core.backoff import Backoff
from core.models import Notice, ReplyTarget
from core.ports import ChatPlatform

__all__ = ["Platforms"]

log = logging.getLogger(__name__)
EMAIL_WITHIN = 1.0  # seconds an email lookup may add before a question is recorded (and acked)
WORKING_AFTER = 2.0  # seconds before a progress indicator is shown: Tuning.working_after sets it
_SHOWING, _SHOWN, _CLEARED = "showing", "shown", "cleared"  # an indicator's life once its moment has come
_SKIPPED = "skipped"  # the adapter chose to show nothing: nothing to take away


class Platforms:
    """Routes each conversation to its platform's adapter; a platform not yet connected simply is not there."""

    def __init__(self, notice_backoff: Backoff, *, working_after: float = WORKING_AFTER) -> None:
        self._by_name: dict[str, ChatPlatform] = {}
        self.notice_backoff = notice_backoff
        self.working_after = working_after
        # Questions whose indicator is not due yet: clear_working wakes the waiter with False (never shown).
        self._waiting: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        # Indicators shown (or being shown) by this process. Bounded: an entry whose question is finished elsewhere
        # (another replica, a kept answer) is forgotten in time, and a forgotten one is cleared the old way.
        self._working: LRUCache[tuple[str, str, str], str] = LRUCache(maxsize=50_000)

    def add(self, platform: ChatPlatform) -> None:
        """Attach (or replace) the adapter for `platform.platform`."""
        self._by_name[platform.platform] = platform

    def remove(self, name: str) -> ChatPlatform | None:
        """Detach a platform (it disconnected for good); its answers wait until one registers again."""
        return self._by_name.pop(name, None)

    def get(self, name: str) -> ChatPlatform | None:
        """The adapter of a platform, if connected."""
        return self._by_name.get(name)

    async def post_notice(self, target: ReplyTarget, notice: Notice, backoff: Backoff | None = None) -> bool:
        """Post a notice, retrying on the given schedule; False if it could not be posted (logged)."""
        platform = self._by_name.get(target.platform)
        if platform is None:
            return False
        try:
            await (backoff or self.notice_backoff).run(lambda: platform.post_notice(target, notice),
                                                       what=f"posting notice {notice.kind.value}")
        except Exception:
            return False
        return True

    async def show_working(self, target: ReplyTarget) -> None:
        """The progress indicator, once `working_after` seconds passed without the answer (a fast answer needs none:
        it saves the platform calls that show and clear it). Cosmetic: a failure is logged and never delays or
        breaks an answer."""
        key = _key(target)
        # An adapter whose indicator costs no platform call (the console's line) may say `working_after = 0`.
        after = getattr(self._by_name.get(target.platform), "working_after", None)
        after = self.working_after if after is None else after
        if after > 0:
            loop = asyncio.get_running_loop()
            due: asyncio.Future[bool] = loop.create_future()
            self._waiting[key] = due
            timer = loop.call_later(after, _resolve, due, True)
            try:
                if not await due:
                    return  # answered (or ended) first: nothing was shown, nothing to take away
            finally:
                timer.cancel()
                if self._waiting.get(key) is due:
                    del self._waiting[key]
        self._working[key] = _SHOWING
        shown: bool | None = None
        try:
            shown = await self._cosmetic(target, "show_working")
        finally:
            if shown is False:  # the adapter showed nothing (its platform's limits): nothing to take away
                if self._working.pop(key, None) != _CLEARED:
                    self._working[key] = _SKIPPED
            elif self._working.get(key) == _CLEARED:  # the answer came while the indicator was on its way
                self._working.pop(key, None)
                await self._cosmetic(target, "clear_working")
            elif key in self._working:
                self._working[key] = _SHOWN

    async def clear_working(self, target: ReplyTarget) -> None:
        """Take the progress indicator away, if it was shown (cosmetic, like show_working)."""
        key = _key(target)
        due = self._waiting.pop(key, None)
        if due is not None:
            _resolve(due, False)
            return
        state = self._working.get(key)
        if state == _SKIPPED:
            del self._working[key]
            return
        if state == _SHOWING:
            self._working[key] = _CLEARED  # show_working takes it away as soon as its call returns
            return
        self._working.pop(key, None)
        # Shown here, or by a process this one does not know of (before a restart, another replica): clear it.
        await self._cosmetic(target, "clear_working")

    async def user_email(self, target: ReplyTarget, *, within: float = EMAIL_WITHIN) -> str | None:
        """The asker's email from the platform's directory, or None when unknown, the lookup failed, or it took
        longer than `within` seconds (it runs before the event is acked: a rate-limited directory must not hold the
        ack until Slack gives up and delivers the event again)."""
        platform = self._by_name.get(target.platform)
        lookup = getattr(platform, "user_email", None)
        if lookup is None:
            return None
        try:
            async with asyncio.timeout(within):
                return await lookup(target.workspace_id, target.user_id)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            log.warning("email lookup on %s took over %.1fs; this question goes to Uppzy without it", target.platform,
                        within)
            return None
        except Exception as exc:
            log.info("email lookup on %s failed: %s", target.platform, type(exc).__name__)
            return None

    async def _cosmetic(self, target: ReplyTarget, method: str) -> bool | None:
        """The adapter's answer (False: it showed nothing), None when it failed or the platform is away."""
        platform = self._by_name.get(target.platform)
        if platform is None:
            return None
        try:
            return await getattr(platform, method)(target)  # type: ignore[no-any-return]
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("%s failed on %s: %s", method, target.platform, type(exc).__name__)
            return None


def _key(target: ReplyTarget) -> tuple[str, str, str]:
    """One question's indicator: the platform, and where the question's message is."""
    return target.platform, target.message_channel_id, target.message_id


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)
