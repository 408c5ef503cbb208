"""BASELINE FOR BENCHMARKS ONLY: a deliberately naive Slack + Discord bot that takes the Uppzy guide literally.

Never deploy this. It exists so `python -m bench.load` can show what the production bot (`uppzy-bot run`) buys
over the obvious implementation. For every mention it does what the M2M guide's Pattern 2 shows:

- submit `POST /chat/async` once (no retry: a 429 or 5xx has no request_id, so the question fails);
- in a task per message, poll `GET /chat/requests/{id}` every 1 s, up to 120 times; a poll that answers an
  error status is read like any other (its body has no `status`), so the loop just goes on, as in the guide;
- post the answer in the thread (Slack `say(thread_ts=...)`; Discord a thread created from the message, else a
  reply in the channel); any error posts one generic line.

No de-duplication (a redelivered event is asked and answered again), no durability (a restart forgets every
question in flight), no poll budget. Sessions are named like the real bot's (`<platform>-user-<user>-<channel>`,
the guide's "Option C") so the benchmark can match Uppzy requests to conversations the same way for both.

Configured from the same variables as the real bot: UPPZY_BASE_URL, UPPZY_API_KEY, UPPZY_SITE_ID,
SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_API_BASE_URL, DISCORD_BOT_TOKEN, DISCORD_API_BASE_URL, DISCORD_GATEWAY_URL.
Run: `python bench/naive_bot.py [--ready-file PATH]` (bench.load does); SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

ERROR_TEXT = "Sorry, something went wrong. Please try again later."
_MENTION = re.compile(r"<@[!&]?\w+>")

log = logging.getLogger("naive_bot")


class GuideClient:
    """Pattern 2 of the guide, line for line: submit, then poll every second up to 120 times."""

    def __init__(self, base_url: str, api_key: str, site_id: str) -> None:
        self.base = f"{base_url.rstrip('/')}/m2m/sites/{site_id}"
        self.http = aiohttp.ClientSession(headers={"X-API-Key": api_key})

    async def close(self) -> None:
        await self.http.close()

    async def ask(self, session_id: str, message: str) -> str:
        async with self.http.post(f"{self.base}/chat/async", json={"session_id": session_id, "message": message}) as r:
            submitted = await r.json()
        request_id = submitted["request_id"]  # an error answer has none: the question fails, no retry
        for _ in range(120):
            async with self.http.get(f"{self.base}/chat/requests/{request_id}") as r:
                status = await r.json()
            if status.get("status") == "completed":
                return str(status["answer"])
            if status.get("status") == "failed":
                raise RuntimeError(f"Chat failed: {status.get('error')}")
            await asyncio.sleep(1)
        raise TimeoutError("Chat polling timed out")


class HttpxGuideClient(GuideClient):
    """The same loop on httpx (NAIVE_HTTP_CLIENT=httpx): shows what the HTTP client alone costs per answer."""

    def __init__(self, base_url: str, api_key: str, site_id: str) -> None:
        import httpx

        self.base = f"{base_url.rstrip('/')}/m2m/sites/{site_id}"
        self.httpx = httpx.AsyncClient(headers={"X-API-Key": api_key}, timeout=30)

    async def ask(self, session_id: str, message: str) -> str:
        submitted = (await self.httpx.post(f"{self.base}/chat/async",
                                           json={"session_id": session_id, "message": message})).json()
        request_id = submitted["request_id"]
        for _ in range(120):
            status = (await self.httpx.get(f"{self.base}/chat/requests/{request_id}")).json()
            if status.get("status") == "completed":
                return str(status["answer"])
            if status.get("status") == "failed":
                raise RuntimeError(f"Chat failed: {status.get('error')}")
            await asyncio.sleep(1)
        raise TimeoutError("Chat polling timed out")

    async def close(self) -> None:
        await self.httpx.aclose()


class NaiveBot:
    """One Slack app and one Discord client; every question is a fire-and-forget task."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        client = HttpxGuideClient if env.get("NAIVE_HTTP_CLIENT") == "httpx" else GuideClient
        self.uppzy = client(env["UPPZY_BASE_URL"], env["UPPZY_API_KEY"], env["UPPZY_SITE_ID"])
        self.tasks: set[asyncio.Task[None]] = set()
        self.slack = AsyncApp(client=AsyncWebClient(base_url=env["SLACK_API_BASE_URL"], token=env["SLACK_BOT_TOKEN"]))
        self.slack.event("app_mention")(self.on_slack_mention)
        intents = discord.Intents.default()
        intents.message_content = True
        self.discord = discord.Client(intents=intents)
        self.discord.event(self.on_message)

    def spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer_or_error(self, session_id: str, text: str) -> str:
        try:
            return await self.uppzy.ask(session_id, text)
        except Exception as exc:
            log.warning("question failed: %s", type(exc).__name__)
            return ERROR_TEXT

    # ---- Slack ----

    async def on_slack_mention(self, event: dict[str, Any], say: Any) -> None:
        self.spawn(self.answer_slack(event, say))

    async def answer_slack(self, event: dict[str, Any], say: Any) -> None:
        session_id = f"slack-user-{event['user']}-{event['channel']}"
        answer = await self.answer_or_error(session_id, _MENTION.sub("", event.get("text", "")).strip())
        await say(text=answer, thread_ts=event["ts"])

    # ---- Discord ----

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or self.discord.user is None or not self.discord.user.mentioned_in(message):
            return
        self.spawn(self.answer_discord(message))

    async def answer_discord(self, message: discord.Message) -> None:
        session_id = f"discord-user-{message.author.id}-{message.channel.id}"
        text = _MENTION.sub("", message.content).strip()
        answer = await self.answer_or_error(session_id, text)
        try:
            thread = await message.create_thread(name=(text or "Question")[:90])
            await thread.send(answer)
        except discord.HTTPException:
            await message.reply(answer)

    # ---- lifecycle ----

    async def run(self, ready_file: str | None) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        Route.BASE = self.env["DISCORD_API_BASE_URL"].rstrip("/")
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.env["DISCORD_GATEWAY_URL"])
        socket = AsyncSocketModeHandler(self.slack, self.env["SLACK_APP_TOKEN"])
        gateway = asyncio.create_task(self.discord.start(self.env["DISCORD_BOT_TOKEN"]))
        try:
            await socket.connect_async()
            await self.discord.wait_until_ready()
            if ready_file:
                await asyncio.to_thread(Path(ready_file).write_text, "ready\n")
            await stop.wait()
        finally:
            await socket.close_async()
            await self.discord.close()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(gateway, 5)
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            await self.uppzy.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_bot", description=__doc__.split("\n")[0])
    parser.add_argument("--ready-file", help="written once Slack and Discord are both connected")
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING").upper())
    asyncio.run(_run(args.ready_file))


async def _run(ready_file: str | None) -> None:
    await NaiveBot(dict(os.environ)).run(ready_file)  # aiohttp sessions must be made inside the loop


if __name__ == "__main__":
    main()
