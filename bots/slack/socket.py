"""Socket Mode with events acked first: bolt's aiohttp handler, reordered so a burst never waits on dispatch."""

from __future__ import annotations

import asyncio

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

__all__ = ["EventsFirstSocketModeHandler"]


class EventsFirstSocketModeHandler(AsyncSocketModeHandler):
    """bolt's aiohttp Socket Mode handler, except that an event envelope is acked before bolt dispatches it.

    An event's ack carries nothing, so it need not wait for bolt's middleware and listener matching; in a
    burst each ack would otherwise queue behind the dispatch of every envelope read before it. Slash commands
    and interactions still go through bolt first, because their ack carries the response.
    """

    async def handle(self, client: AsyncBaseSocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        """Ack events at once, then dispatch; anything else the usual way."""
        if req.type != "events_api":
            await super().handle(client, req)  # type: ignore[arg-type]
            return
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
        await asyncio.sleep(0)  # let the other envelopes of a burst be acked before this one is dispatched
        await run_async_bolt_app(self.app, req)
