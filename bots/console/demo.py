"""`uppzy-bot demo`: chat with a simulated (or, with --external, your real) Uppzy site in the terminal."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from dataclasses import replace
from datetime import datetime
from typing import Any

from bots.console.adapter import ConsoleAdapter
from bots.console.screen import LineReader, Screen
from bots.console.sim_state import SimulatorState
from core.config import ConfigError, Secret, Settings, parse_duration
from core.models import FeedbackEvent, FeedbackOutcome
from core.ports import EndResult, Inbound

__all__ = ["run_demo"]

HELP = """Type a question and press Enter. Commands:
  /good, /bad   rate the last answer      /end       close this conversation
  /sessions     list your sessions        /help      this text
  /quit         leave (Ctrl+D or Ctrl+C work too)"""

_INTERRUPTED = 130  # like any command stopped with Ctrl+C


async def run_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the console chat until /quit, end of input, Ctrl+C or SIGTERM; never a traceback on the way out."""
    try:
        idle = parse_duration(args.idle)
    except ValueError as exc:
        raise ConfigError("--idle", str(exc)) from None
    if args.external:
        settings.require("UPPZY_API_KEY", "UPPZY_SITE_ID")
    quit_now = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):  # from here on Ctrl+C is a request to leave, not an exception
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, quit_now.set)
    screen = Screen()
    reader = LineReader(screen)
    try:
        return await _chat(settings, args, idle, screen, reader, quit_now)
    finally:
        reader.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def _chat(settings: Settings, args: argparse.Namespace, idle: float, screen: Screen, reader: LineReader,
                quit_now: asyncio.Event) -> int:
    sim: Any = None
    state = SimulatorState(args.db)
    if not args.external:
        from simulator import Simulator, SimulatorConfig

        sim = Simulator(SimulatorConfig(latency=args.latency))
        state.restore(sim)  # the simulated site remembers its sessions across demo runs, as Uppzy does
        base = await sim.start()
        settings = replace(settings, uppzy_base_url=base, uppzy_api_key=Secret("sim-key"),
                           uppzy_site_id="demo-site", uppzy_tenant_id="demo-tenant")
    settings = replace(settings, session_idle_timeout=idle)
    from bots.runner import open_core

    core = None
    try:
        core = await open_core(settings, path=args.db)
        console = ConsoleAdapter(screen=screen)
        core.relay.register(console)
        await core.relay.start()
        where = "a simulated Uppzy site" if sim else settings.uppzy_base_url
        screen.show(f"Uppzy demo: chatting with {where}. Conversations close after {args.idle} of silence.")
        screen.show(HELP)
        reader.start()
        if not await _converse(core.relay, console, reader, quit_now):
            return _INTERRUPTED
        # Let answers in flight arrive before leaving, like a person waiting a moment (Ctrl+C stops waiting).
        waiting = asyncio.ensure_future(core.relay.wait_idle(timeout=args.drain))
        interrupted = asyncio.ensure_future(quit_now.wait())
        await asyncio.wait({waiting, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        for task in (waiting, interrupted):
            task.cancel()
        await asyncio.gather(waiting, interrupted, return_exceptions=True)
        return _INTERRUPTED if quit_now.is_set() else 0
    finally:
        if core is not None:
            await core.aclose()
        if sim is not None:
            state.save(sim)
            await sim.stop()


async def _converse(relay: Inbound, console: ConsoleAdapter, reader: LineReader, quit_now: asyncio.Event) -> bool:
    """Read and act on lines until /quit or end of input (True) or until interrupted (False)."""
    screen = console.screen
    while True:
        next_line = asyncio.ensure_future(reader.line())
        interrupted = asyncio.ensure_future(quit_now.wait())
        await asyncio.wait({next_line, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        interrupted.cancel()
        if quit_now.is_set():
            next_line.cancel()
            return False
        line = next_line.result()
        if line is None:
            return True
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return True
        if text == "/help":
            screen.show(HELP)
        elif text in ("/good", "/bad"):
            await _rate(relay, console, "good" if text == "/good" else "bad")
        elif text == "/end":
            result = await relay.end_conversation(console.message("").target)
            screen.show({EndResult.ENDED: "Conversation closed; your next question starts a new one.",
                         EndResult.NO_SESSION: "There is no open conversation to end.",
                         EndResult.BUSY: "Wait for the answer in progress, then try /end again."}[result])
        elif text == "/sessions":
            await _sessions(relay, console)
        elif text.startswith("/"):
            screen.show(f"Unknown command {text.split()[0]!r}. {HELP}")
        else:
            await relay.handle_message(console.message(text))


async def _rate(relay: Inbound, console: ConsoleAdapter, rating: str) -> None:
    if console.last_answer_id is None:
        console.screen.show("There is no answer to rate yet.")
        return
    result = await relay.handle_feedback(FeedbackEvent(
        platform="console", workspace_id="local", message_id=console.last_answer_id, user_id=console.user_id,
        source="button", rating=rating,  # type: ignore[arg-type]
    ))
    console.screen.show(result.message or ("Thanks!" if result.outcome is FeedbackOutcome.RECORDED
                                           else result.outcome.value))


async def _sessions(relay: Inbound, console: ConsoleAdapter) -> None:
    sessions = await relay.list_sessions("console", "local", None, console.user_id)
    if not sessions:
        console.screen.show("No sessions yet.")
        return
    lines = [f"Your sessions ({len(sessions)}, newest first):"]
    for number, s in enumerate(sessions, 1):
        count = s.message_count or 0
        state = "open" if s.open else f"closed {_when(s.closed_at)}"
        lines.append(f"  {number}. started {_when(s.created_at)}, {count} message{'' if count == 1 else 's'}, {state}")
    console.screen.show("\n".join(lines))


def _when(stamp: str | None) -> str:
    """An ISO timestamp from Uppzy as local 'YYYY-MM-DD HH:MM' (as given when it cannot be read)."""
    if not stamp:
        return "at an unknown time"
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp

