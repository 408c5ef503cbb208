"""Socket Mode with questions first: a message or mention is recorded and acked before bolt parses anything."""

from __future__ import annotations

import logging

from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from bots.slack.events import SlackEvents

__all__ = ["QuestionsFirstHandler"]

log = logging.getLogger(__name__)


class QuestionsFirstHandler(AsyncSocketModeHandler):
    """bolt's Socket Mode handler, except that question events go to SlackEvents.receive and are acked after it."""

    def __init__(self, app: AsyncApp, app_token: str, *, events: SlackEvents, **kwargs: object) -> None:
        super().__init__(app, app_token, **kwargs)  # type: ignore[arg-type]
        self._events = events

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        """Ack a question event once it is recorded; hand every other envelope to bolt as before."""
        if req.type != "events_api" or not SlackEvents.is_question(req.payload):
            await super().handle(client, req)
            return
        try:
            await self._events.receive(req.payload)
        except Exception:  # unacked, as bolt leaves a failed listener's event: Slack delivers it again
            log.exception("Slack event envelope=%s not acked: recording it failed", req.envelope_id)
            return
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
