"""One read per key at a time: callers that ask while it runs share its result (a burst of first messages)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["InFlight"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class InFlight(Generic[K, V]):
    """`load(key, read)` runs `read()` unless a read of `key` is already running, whose result it shares instead.

    A caller cancelled while waiting does not cancel the shared read; if the caller that started the read is
    cancelled, the others read for themselves.
    """

    def __init__(self) -> None:
        self._loading: dict[K, asyncio.Future[V]] = {}

    async def load(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """The result of `read()` for `key`, shared with every caller that asks while it runs."""
        loading = self._loading.get(key)
        if loading is not None:
            try:
                return await asyncio.shield(loading)
            except asyncio.CancelledError:
                if loading.cancelled():  # the reader was cancelled, not us: read for ourselves
                    return await self.load(key, read)
                raise
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await read()
            future.set_result(value)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here so an unawaited failure is not reported twice
            raise
        finally:
            self._loading.pop(key, None)
        return value
