"""The connected chat platforms by name, and the two ways core talks to them besides answers: notices and progress."""

from __future__ import annotations

import asyncio
import logging

from core.backoff import Backoff
from core.models import Notice, ReplyTarget
from core.ports import ChatPlatform

__all__ = ["Platforms"]

log = logging.getLogger(__name__)
EMAIL_WITHIN = 1.0  # seconds an email lookup may add before a question is recorded (and acked)


class Platforms:
    """Routes each conversation to its platform's adapter; a platform not yet connected simply is not there."""

    def __init__(self, notice_backoff: Backoff) -> None:
        self._by_name: dict[str, ChatPlatform] = {}
        self.notice_backoff = notice_backoff

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
        """The progress indicator: cosmetic, so a failure is logged and never delays or breaks an answer."""
        await self._cosmetic(target, "show_working")

    async def clear_working(self, target: ReplyTarget) -> None:
        """Take the progress indicator away (cosmetic, like show_working)."""
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

    async def _cosmetic(self, target: ReplyTarget, method: str) -> None:
        platform = self._by_name.get(target.platform)
        if platform is None:
            return
        try:
            await getattr(platform, method)(target)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("%s failed on %s: %s", method, target.platform, type(exc).__name__)
