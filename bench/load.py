"""Load benchmark: the real bot and a naive one through Slack Socket Mode and the Discord gateway, under faults.

Run: `python -m bench.load` (2,000 conversations over 60 s, 5% of Uppzy calls failing; three runs, ~7 minutes on
2 cores, most of it the default-budget run draining its backlog) or `python -m bench.load --quick` (100
conversations over 10 s, ours at the default poll rate and the naive bot only; under a minute). `--logs DIR` keeps
every bot's and simulator's log.

Each variant gets a fresh world: the Uppzy simulator (`python -m bots simulate`, its own process), FakeSlack and
FakeDiscord (in this process), and the bot in its own process, configured only through the environment:
`python -m bots run` (the production entry point) for ours, `bench/naive_bot.py` for the naive baseline.
Half the conversations are Slack app_mention envelopes, half Discord MESSAGE_CREATE mentions, each from its own
user, spread evenly over the duration; ~2% of them (1% of each platform's) are delivered twice (Slack
retry_attempt=1 with the same event_id and ts; Discord the same MESSAGE_CREATE again 0.2-0.6 s later).
A post counts as an answer when it carries the simulator's answer text, as an error notice otherwise.

Every time compared is CLOCK_MONOTONIC, shared by all processes on Linux: ack latency is the fake's ack time minus
the envelope's send time; delivery delay is when the first answer reached the fake minus when the simulator had
an answer ready for that conversation (`/_simulator/record` ready_at, matched by Uppzy session id, which both bots
name `<platform>-user-<user>-<channel>`). CPU is the bot process's user+system time from "connected" to just
before SIGTERM (start-up excluded), divided by answered conversations; peak RSS is its VmHWM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.slack_burst import _quantile
from tests.fakes.discord_fake import FakeDiscord
from tests.fakes.slack_fake import FakeSlack

KEY, SITE = "bench-key", "demo-site"
QUESTION = "how do returns work?"
ANSWER_MARK = "accepted within 30 days"  # in the simulator's answer to QUESTION, whatever the formatting
GUILD_ID = 811_111_111_111_111_111
CHANNEL_BASE = 822_222_222_222_000_000
USER_BASE = 855_555_555_555_000_000
CHANNELS = 40  # per platform; users are all distinct, so every (user, channel) is its own conversation
NAIVE_BOT = Path(__file__).with_name("naive_bot.py")  # run as a script: bench/ is not an installed package
_MESSAGES = re.compile(r"/channels/(\d+)/messages")
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


# ---- subprocesses ---------------------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the benchmark itself dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Processes:
    """Every subprocess the benchmark starts; close() ends whatever is still running, whatever happened."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, args: list[str], *, env: dict[str, str], cwd: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent)
        self.running.append(proc)
        return proc

    async def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
        """SIGTERM, wait (without blocking the loop), SIGKILL if it will not go; returns the exit code."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        code = proc.wait()
        with contextlib.suppress(ValueError):
            self.running.remove(proc)
        return code

    def close(self) -> None:
        for proc in reversed(self.running):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.running:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.running.clear()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds user+system, peak RSS MB) of a live process, from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
    hwm = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmHWM"))
    return cpu, int(hwm.split()[1]) / 1024


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# ---- conversations --------------------------------------------------------------------------------------------


@dataclass
class Conversation:
    """One question from its own user, and every bot message that reached the fake for it."""

    index: int
    platform: str
    user: str
    channel: str
    offset: float
    redeliver: float | None  # seconds after the first delivery, or None
    key: str = ""  # Slack ts / Discord message id: what answers point back to
    sent_at: float = 0.0  # monotonic time its event was sent
    replies: list[tuple[float, bool]] = field(default_factory=list)  # (arrived at the fake, is an answer)

    @property
    def session(self) -> str:
        return f"{self.platform}-user-{self.user}-{self.channel}"

    @property
    def answers(self) -> list[float]:
        return [at for at, answer in self.replies if answer]


def plan(n: int, duration: float, seed: int, *, slack_only: bool = False, redeliver: bool = True
         ) -> list[Conversation]:
    """Alternate Slack and Discord (or Slack only), evenly spaced; ~1% of each platform's (at least one) delivered
    twice unless `redeliver` is off."""
    rng = random.Random(seed)
    per_side = max(1, round(n * 0.01)) if redeliver else 0
    twice = {i for side in (range(0, n, 2), range(1, n, 2)) for i in rng.sample(side, min(len(side), per_side))}
    convs = []
    for i in range(n):
        slack = slack_only or i % 2 == 0
        user = f"U{i:06d}" if slack else str(USER_BASE + i)
        channel = f"C{i % CHANNELS:03d}" if slack else str(CHANNEL_BASE + i % CHANNELS)
        convs.append(Conversation(i, "slack" if slack else "discord", user, channel, i * duration / n,
                                  rng.uniform(0.2, 0.6) if i in twice else None))
    return convs


class Tracker:
    """Reads what the bot posted on both fakes (incrementally) and files each post under its conversation."""

    def __init__(self, slack: FakeSlack, discord: FakeDiscord) -> None:
        self.slack, self.discord = slack, discord
        self.by_key: dict[str, Conversation] = {}
        self.ended = 0
        self._s = self._d = 0

    def _add(self, key: str | None, at: float, text: str) -> None:
        conv = self.by_key.get(str(key))
        if conv is not None:
            self.ended += not conv.replies
            conv.replies.append((at, ANSWER_MARK in text))

    def update(self) -> None:
        calls = self.slack.calls
        while self._s < len(calls):
            call = calls[self._s]
            self._s += 1
            if call.method == "chat.postMessage" and call.ok:
                self._add(call.args.get("thread_ts"), call.at, str(call.args.get("text") or ""))
        requests = self.discord.requests
        while self._d < len(requests):
            req = requests[self._d]
            if req.status is None and time.monotonic() - req.at < 5:
                return  # still being handled: look again next time
            self._d += 1
            match = _MESSAGES.fullmatch(req.path)
            if req.method != "POST" or match is None or req.status not in (200, 201):
                continue
            body = req.json if isinstance(req.json, dict) else {}
            reference = (body.get("message_reference") or {}).get("message_id")  # a reply in the channel
            self._add(str(reference or match.group(1)), req.at, str(body.get("content") or ""))  # else the thread


# ---- one run ----------------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    kind: str  # "ours" or "naive"
    poll_rate: float | None = None  # UPPZY_POLL_RATE for ours; None = the default
    env: dict[str, str] = field(default_factory=dict)  # more settings of the bot process


@dataclass
class Row:
    name: str
    convs: int
    redelivered: int
    ack_p50: float
    ack_p99: float
    answered_once: int
    duplicates: int
    lost: int
    notices: int
    delay_p50: float
    delay_p95: float
    uppzy_calls: int
    uppzy_failed: int
    polls_per_answer: float
    cpu_ms: float
    rss_mb: float
    last_reply: float
    exit_code: int
    answered: int = 0  # conversations with at least one answer
    delays_matched: int = 0  # of those, how many were matched to a simulator request (should be all)
    e2e_p50: float = float("nan")  # seconds from the event sent to its first answer
    e2e_p95: float = float("nan")
    submit_p50: float = float("nan")  # seconds from the event sent to its question reaching Uppzy
    submit_p95: float = float("nan")
    server_cpu_ms: float = float("nan")  # a database server's CPU per answered message over the same window


async def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url) as res:
                    if res.status == 200:
                        return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before {url} was ready")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready within {timeout:.0f}s")
            await asyncio.sleep(0.1)


async def _record(sim_port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{sim_port}/_simulator/record",
                                                         timeout=aiohttp.ClientTimeout(60)) as res:
        return dict(await res.json())


def _bot_env(variant: Variant, sim_port: int, slack: FakeSlack, discord: FakeDiscord, tmp: str,
             web_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in _PROXIES and not k.startswith(("UPPZY_", "SLACK_", "DISCORD_", "SESSION_"))}
    env.update(
        UPPZY_BASE_URL=f"http://127.0.0.1:{sim_port}/api/v1", UPPZY_API_KEY=KEY, UPPZY_SITE_ID=SITE,
        SLACK_BOT_TOKEN=slack.bot_token, SLACK_APP_TOKEN=slack.app_token, SLACK_API_BASE_URL=slack.api_url,
        DISCORD_BOT_TOKEN=discord.token, DISCORD_API_BASE_URL=discord.api_base,
        DISCORD_GATEWAY_URL=discord.gateway_url, DISCORD_GUILD_IDS=str(GUILD_ID),
        DATABASE_URL=f"sqlite:///{tmp}/bot.db", PORT=str(web_port), LOG_LEVEL="WARNING",
    )
    if variant.poll_rate is not None:
        env["UPPZY_POLL_RATE"] = f"{variant.poll_rate:g}"
    env.update(variant.env)
    return env


async def _send(conv: Conversation, slack: FakeSlack, discord: FakeDiscord, acks: list[str],
                later: set[asyncio.Task[Any]]) -> None:
    text = f"{QUESTION} (#{conv.index})"
    if conv.platform == "slack":
        event = slack.app_mention_event(conv.user, conv.channel, text)
        event_id = f"Ev{conv.index:09d}"
        envelope = await slack.send_event(event, event_id=event_id)
        acks.append(envelope)
        conv.key = event["ts"]
        again: Any = lambda: slack.send_event(event, event_id=event_id, retry_attempt=1,  # noqa: E731
                                              retry_reason="timeout")
    else:
        payload = await discord.user_message(channel_id=int(conv.channel), guild_id=GUILD_ID,
                                             author_id=int(conv.user), content=f"<@{discord.bot_id}> {text}",
                                             mentions_bot=True)
        conv.key = str(payload["id"])
        again = lambda: discord.redeliver(payload)  # noqa: E731
    if conv.redeliver is not None:
        async def redeliver(wait: float) -> None:
            await asyncio.sleep(wait)
            result = await again()
            if conv.platform == "slack":
                acks.append(result)

        task = asyncio.create_task(redeliver(conv.redeliver))
        later.add(task)
        task.add_done_callback(later.discard)


async def run_variant(variant: Variant, args: argparse.Namespace, procs: Processes,
                      server_cpu: Callable[[], float | None] | None = None) -> Row:
    """Fresh simulator, fakes and bot; drive the load; measure; tear everything down. `server_cpu`: CPU seconds a
    database server has used so far, read at both ends of the measured window."""
    half = args.failure_rate / 2
    with tempfile.TemporaryDirectory(prefix="uppzy-load-") as tmp:
        logs = Path(tmp)
        if args.logs:
            logs = Path(args.logs) / re.sub(r"\W+", "-", variant.name).strip("-")
            logs.mkdir(parents=True, exist_ok=True)
        sim_port, web_port = _free_port(), _free_port()
        sim = procs.start([sys.executable, "-m", "bots", "simulate", "--port", str(sim_port), "--api-key", KEY,
                           "--site-id", SITE, "--latency", args.latency, "--seed", str(args.seed),
                           "--error-rate", f"{half:g}", "--rate-limit-rate", f"{half:g}", "--retry-after", "1"],
                          env=dict(os.environ), cwd=tmp, log=logs / "simulator.log")
        slack, discord = FakeSlack(), FakeDiscord()
        bot: subprocess.Popen[bytes] | None = None
        await slack.start()
        await discord.start()
        try:
            discord.add_guild(GUILD_ID, name="Load")
            for k in range(CHANNELS):
                discord.add_channel(GUILD_ID, CHANNEL_BASE + k, name=f"help-{k}")
            await _wait_http(f"http://127.0.0.1:{sim_port}/_simulator/record", 30, sim)
            env = _bot_env(variant, sim_port, slack, discord, tmp, web_port)
            ready_file = logs / "naive.ready"
            command = ([sys.executable, "-m", "bots", "run"] if variant.kind == "ours"
                       else [sys.executable, str(NAIVE_BOT), "--ready-file", str(ready_file)])
            bot = procs.start(command, env=env, cwd=tmp, log=logs / "bot.log")
            try:
                await _wait_ready(variant, bot, slack, discord, web_port, ready_file)
            except Exception:
                print(f"{variant.name}: bot did not become ready; its log ends:\n{_tail(logs / 'bot.log')}",
                      file=sys.stderr)
                raise
            cpu0, _ = _proc_usage(bot.pid)
            server0 = server_cpu() if server_cpu else None
            convs, acks, last_reply = await _drive(args, slack, discord, sim_port)
            cpu1, rss = _proc_usage(bot.pid)
            server1 = server_cpu() if server_cpu else None
            code = await procs.stop(bot)
            if code != 0:
                print(f"{variant.name}: bot exited with {code}; its log ends:\n{_tail(logs / 'bot.log')}",
                      file=sys.stderr)
            record = await _record(sim_port)
        finally:
            if bot is not None:
                await procs.stop(bot)
            await procs.stop(sim)
            await discord.stop()
            await slack.stop()
    row = _row(variant, convs, [(slack.acks[e]["at"] - slack.event_sent_at[e]) * 1000 for e in acks if e in
                                slack.acks], record, cpu1 - cpu0, rss, last_reply, code)
    if server0 is not None and server1 is not None:
        row.server_cpu_ms = 1000 * (server1 - server0) / max(1, row.answered)
    return row


async def _wait_ready(variant: Variant, bot: subprocess.Popen[bytes], slack: FakeSlack, discord: FakeDiscord,
                      web_port: int, ready_file: Path) -> None:
    """Both fakes see a live connection, and the bot says it is ready (ours: /readyz; naive: its ready file)."""
    if variant.kind == "ours":
        await _wait_http(f"http://127.0.0.1:{web_port}/readyz", 60, bot)
    deadline = time.monotonic() + 60
    while not (slack.open_connections and discord.connected
               and (variant.kind == "ours" or await asyncio.to_thread(ready_file.exists))):
        if bot.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{variant.name} did not connect (exit code {bot.poll()})")
        await asyncio.sleep(0.05)


async def _drive(args: argparse.Namespace, slack: FakeSlack, discord: FakeDiscord,
                 sim_port: int) -> tuple[list[Conversation], list[str], float]:
    """Send every conversation on schedule, then wait until each has ended and late duplicates had their chance."""
    convs = plan(args.conversations, args.duration, args.seed, slack_only=getattr(args, "slack_only", False),
                 redeliver=getattr(args, "redeliver", True))
    tracker = Tracker(slack, discord)
    acks: list[str] = []
    later: set[asyncio.Task[Any]] = set()
    started = time.monotonic()
    for conv in convs:
        wait = started + conv.offset - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        conv.sent_at = time.monotonic()
        await _send(conv, slack, discord, acks, later)
        tracker.by_key[conv.key] = conv
        tracker.update()
    await asyncio.gather(*later)
    cap = time.monotonic() + args.cap
    while tracker.ended < len(convs) and time.monotonic() < cap:
        await asyncio.sleep(0.25)
        tracker.update()
    # A second copy of an answer comes from a second Uppzy request: give the latest one time to be polled.
    record = await _record(sim_port)
    latest = max((c["ready_at"] for c in record.get("chats", [])), default=0.0)
    settle_until = min(cap, max(time.monotonic() + 1.5, latest + 3.0))
    while time.monotonic() < settle_until:
        await asyncio.sleep(0.25)
        tracker.update()
    tracker.update()
    replies = [at for conv in convs for at, _ in conv.replies]
    return convs, acks, (max(replies) - started) if replies else float("nan")


def _row(variant: Variant, convs: list[Conversation], ack_ms: list[float], record: dict[str, Any], cpu: float,
         rss: float, last_reply: float, exit_code: int) -> Row:
    ready: dict[str, list[float]] = {}
    submitted: dict[str, float] = {}
    for chat in record["chats"]:
        if not chat["fail"]:
            ready.setdefault(chat["session_id"], []).append(chat["ready_at"])
        at = chat.get("submitted_at")
        if at:
            submitted[chat["session_id"]] = min(at, submitted.get(chat["session_id"], at))
    delays = []
    for conv in convs:
        answers = conv.answers
        ready_at = [t for t in ready.get(conv.session, []) if answers and t <= answers[0]]
        if ready_at:
            delays.append(answers[0] - min(ready_at))
    answered = sum(1 for c in convs if c.answers)
    e2e = [c.answers[0] - c.sent_at for c in convs if c.answers and c.sent_at]
    to_submit = [submitted[c.session] - c.sent_at for c in convs if c.sent_at and c.session in submitted]
    calls = record["calls"]
    polls = sum(1 for c in calls if c["endpoint"] == "chat_status")
    return Row(
        name=variant.name, convs=len(convs), redelivered=sum(1 for c in convs if c.redeliver is not None),
        ack_p50=_quantile(ack_ms, 0.5), ack_p99=_quantile(ack_ms, 0.99),
        answered_once=sum(1 for c in convs if len(c.answers) == 1 and len(c.replies) == 1),
        duplicates=sum(max(0, len(c.replies) - 1) for c in convs),
        lost=sum(1 for c in convs if not c.replies),
        notices=sum(1 for c in convs if c.replies and not c.answers),
        delay_p50=_quantile(delays, 0.5), delay_p95=_quantile(delays, 0.95),
        uppzy_calls=len(calls), uppzy_failed=sum(1 for c in calls if c["status"] >= 429),
        polls_per_answer=polls / max(1, answered), cpu_ms=1000 * cpu / max(1, answered), rss_mb=rss,
        last_reply=last_reply, exit_code=exit_code, answered=answered, delays_matched=len(delays),
        e2e_p50=_quantile(e2e, 0.5), e2e_p95=_quantile(e2e, 0.95),
        submit_p50=_quantile(to_submit, 0.5), submit_p95=_quantile(to_submit, 0.95),
    )


# ---- report -----------------------------------------------------------------------------------------------------

_HEADER = ("| variant | convs (twice) | ack p50 / p99 | answered once | duplicates | lost | error notices "
           "| delivery delay p50 / p95 | Uppzy calls (failed) | status polls / answer | CPU / answer | peak RSS "
           "| last reply |")


def _fmt_row(r: Row) -> str:
    exit_note = "" if r.exit_code == 0 else f" (exit {r.exit_code})"
    return (f"| {r.name}{exit_note} | {r.convs} ({r.redelivered}) | {r.ack_p50:.1f} / {r.ack_p99:.1f} ms "
            f"| {r.answered_once} | {r.duplicates} | {r.lost} | {r.notices} "
            f"| {r.delay_p50 * 1000:.0f} / {r.delay_p95 * 1000:.0f} ms "
            f"| {r.uppzy_calls} ({100 * r.uppzy_failed / max(1, r.uppzy_calls):.1f}%) | {r.polls_per_answer:.2f} "
            f"| {r.cpu_ms:.1f} ms | {r.rss_mb:.0f} MB | {r.last_reply:.1f} s |")


def _ratio(a: float, b: float) -> str:
    if b == 0:
        return "—" if a == 0 else "∞"
    return f"{a / b:.2f}×"


def _fmt_ratio(naive: Row, ours: Row) -> str:
    return (f"| naive / {ours.name} | | {_ratio(naive.ack_p50, ours.ack_p50)} / {_ratio(naive.ack_p99, ours.ack_p99)} "
            f"| {_ratio(naive.answered_once, ours.answered_once)} | {_ratio(naive.duplicates, ours.duplicates)} "
            f"| {_ratio(naive.lost, ours.lost)} | {_ratio(naive.notices, ours.notices)} "
            f"| {_ratio(naive.delay_p50, ours.delay_p50)} / {_ratio(naive.delay_p95, ours.delay_p95)} "
            f"| {_ratio(naive.uppzy_calls, ours.uppzy_calls)} "
            f"| {_ratio(naive.polls_per_answer, ours.polls_per_answer)} "
            f"| {_ratio(naive.cpu_ms, ours.cpu_ms)} | {_ratio(naive.rss_mb, ours.rss_mb)} "
            f"| {_ratio(naive.last_reply, ours.last_reply)} |")


def table(rows: list[Row]) -> str:
    naive = next(r for r in rows if r.name.startswith("naive"))
    ours = [r for r in rows if r is not naive]
    lines = [_HEADER, "|" + "---|" * _HEADER.count(" | ") + "---|"]
    lines += [_fmt_row(r) for r in rows]
    lines += [_fmt_ratio(naive, r) for r in ours]
    return "\n".join(lines)


def verdict(rows: list[Row]) -> str:
    naive = next(r for r in rows if r.name.startswith("naive"))
    best = min((r for r in rows if r is not naive), key=lambda r: (r.lost + r.duplicates, r.delay_p95))
    clean = best.lost == 0 and best.duplicates == 0 and best.answered_once + best.notices == best.convs
    return (f"Verdict: {best.name} {'answered every conversation exactly once' if clean else 'was NOT clean'} "
            f"({best.answered_once}/{best.convs} answered once, {best.notices} error notices, "
            f"{best.duplicates} duplicates, {best.lost} lost) with delivery p95 {best.delay_p95:.2f} s and "
            f"{best.polls_per_answer:.2f} polls/answer; the naive bot answered {naive.answered_once} once, "
            f"posted {naive.duplicates} duplicate replies and {naive.notices} error notices, "
            f"p95 {naive.delay_p95:.2f} s, {naive.polls_per_answer:.2f} polls/answer.")


# ---- entry point ------------------------------------------------------------------------------------------------


async def run_all(args: argparse.Namespace, procs: Processes) -> list[Row]:
    variants = [Variant("ours (UPPZY_POLL_RATE=20, default)", "ours")]
    if args.high_poll_rate:
        variants.append(Variant(f"ours (UPPZY_POLL_RATE={args.high_poll_rate:g})", "ours", args.high_poll_rate))
    variants.append(Variant("naive (guide taken literally)", "naive"))
    rows = []
    for variant in variants:
        print(f"running {variant.name} …", file=sys.stderr, flush=True)
        rows.append(await run_variant(variant, args, procs))
        print(_fmt_row(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl+C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n")[0])
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds over which conversations start")
    parser.add_argument("--failure-rate", type=float, default=0.05,
                        help="share of Uppzy calls failing, half 5xx and half 429 (Retry-After 1 s)")
    parser.add_argument("--latency", default="2-6", help="simulated answer latency MIN-MAX seconds")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--high-poll-rate", type=float, default=100.0,
                        help="UPPZY_POLL_RATE of the second 'ours' row (0: skip that row)")
    parser.add_argument("--cap", type=float, default=180.0,
                        help="seconds to wait after the last question for every conversation to end")
    parser.add_argument("--logs", metavar="DIR", help="keep the simulator's and each bot's log under DIR")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 100 conversations over 10 s, default poll rate and naive only")
    args = parser.parse_args(argv)
    if args.quick:
        args.conversations, args.duration, args.high_poll_rate = 100, 10.0, 0.0
    procs = Processes()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (nohup, &)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        rows = asyncio.run(run_all(args, procs))
    except KeyboardInterrupt:
        print("interrupted; subprocesses stopped", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"bench.load: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.close()
    print(f"{args.conversations} conversations over {args.duration:g} s (half Slack Socket Mode, half Discord "
          f"gateway; {rows[0].redelivered} delivered twice), {args.failure_rate:.0%} of Uppzy calls failing "
          f"(5xx + 429), answer latency {args.latency} s, seed {args.seed}, {os.cpu_count()} CPUs.\n")
    print(table(rows))
    print()
    for row in rows:
        if row.delays_matched < row.answered:
            print(f"note: {row.name}: delivery delay matched for only {row.delays_matched}/{row.answered} "
                  "answered conversations")
    print(verdict(rows))
    ours = [r for r in rows if not r.name.startswith("naive")]
    return 0 if all(r.lost == 0 and r.duplicates == 0 for r in ours) else 1


if __name__ == "__main__":
    raise SystemExit(main())
