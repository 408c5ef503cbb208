"""`uppzy-bot demo`: chat with a simulated (or, with --external, your real) Uppzy site in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from dataclasses import replace

from bots.console.adapter import ConsoleAdapter
from bots.runner import open_core
from core.config import ConfigError, Secret, Settings, parse_duration
from core.models import FeedbackEvent, FeedbackOutcome
from core.ports import EndResult, Inbound

__all__ = ["run_demo"]

HELP = """Type a question and press Enter. Commands:
  /good, /bad   rate the last answer      /end       close this conversation
  /sessions     list your sessions        /help      this text
  /quit         leave (Ctrl+D works too)"""


async def _read_line() -> str | None:
    line = await asyncio.to_thread(sys.stdin.readline)
    return line if line else None


async def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the console chat until /quit or end of input."""
    try:
        idle = parse_duration(args.idle)
    except ValueError as exc:
        raise ConfigError("--idle", str(exc)) from None
    sim = None
    if args.external:
        settings.require("UPPZY_API_KEY", "UPPZY_SITE_ID")
    else:
        from simulator import Simulator, SimulatorConfig

        sim = Simulator(SimulatorConfig(latency=args.latency))
        base = await sim.start()
        settings = replace(settings, uppzy_base_url=base, uppzy_api_key=Secret("sim-key"),
                           uppzy_site_id="demo-site", uppzy_tenant_id="demo-tenant")
    settings = replace(settings, session_idle_timeout=idle)
    core = await open_core(settings, path=args.db)
    relay = core.relay
    console = ConsoleAdapter()
    relay.register(console)
    await relay.start()
    where = "a simulated Uppzy site" if sim else settings.uppzy_base_url
    print(f"Uppzy demo: chatting with {where}. Conversations close after {args.idle} of silence.")
    print(HELP, flush=True)
    try:
        while (line := await _read_line()) is not None:
            text = line.strip()
            if not text:
                continue
            if text in ("/quit", "/exit"):
                break
            if text == "/help":
                print(HELP, flush=True)
            elif text in ("/good", "/bad"):
                await _rate(relay, console, "good" if text == "/good" else "bad")
            elif text == "/end":
                result = await relay.end_conversation(console.message("").target)
                print({EndResult.ENDED: "Conversation closed; your next question starts a new one.",
                       EndResult.NO_SESSION: "There is no open conversation to end.",
                       EndResult.BUSY: "Wait for the answer in progress, then try /end again."}[result], flush=True)
            elif text == "/sessions":
                await _sessions(relay)
            elif text.startswith("/"):
                print(f"Unknown command {text.split()[0]!r}. {HELP}", flush=True)
            else:
                msg = console.message(text)
                await relay.handle_message(msg)
                print(f"  (asked as #{msg.target.message_id})", flush=True)
        # Let answers in flight arrive before leaving, like a person waiting a moment.
        with contextlib.suppress(TimeoutError):
            await relay.wait_idle(timeout=args.drain)
    finally:
        await core.aclose()
        if sim is not None:
            await sim.stop()
    return 0


async def _rate(relay: Inbound, console: ConsoleAdapter, rating: str) -> None:
    if console.last_answer_id is None:
        print("There is no answer to rate yet.", flush=True)
        return
    result = await relay.handle_feedback(FeedbackEvent(
        platform="console", workspace_id="local", message_id=console.last_answer_id, user_id=console.user_id,
        source="button", rating=rating,  # type: ignore[arg-type]
    ))
    print(result.message or ("Thanks!" if result.outcome is FeedbackOutcome.RECORDED else result.outcome.value),
          flush=True)


async def _sessions(relay: Inbound) -> None:
    sessions = await relay.list_sessions("console", "local", None)
    if not sessions:
        print("No sessions yet.", flush=True)
    for s in sessions:
        state = "open" if s.open else f"closed {s.closed_at}"
        print(f"  {s.id}: {s.message_count or 0} messages, started {s.created_at}, {state}", flush=True)
