"""The `uppzy-bot` command: the composition root that reads settings once and starts what was asked."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Sequence

from core.config import ConfigError, Settings, load_settings, shown_url
from core.redaction import configure_logging

__all__ = ["main"]


def _range(text: str) -> tuple[float, float]:
    try:
        low, _, high = text.partition("-")
        pair = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a range; use MIN-MAX seconds, e.g. 2-6") from None
    if pair[0] < 0 or pair[1] < pair[0]:
        raise argparse.ArgumentTypeError("the range must be MIN-MAX with 0 <= MIN <= MAX")
    return pair


def _key_binding(text: str) -> tuple[str, tuple[str, ...]]:
    """KEY=SITE[,SITE...] for `simulate --key` (one clear line when malformed)."""
    from simulator import parse_key_binding

    try:
        return parse_key_binding(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be a share from 0 to 1, e.g. 0.05 for 5%")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="uppzy-bot",
        description="Puts an Uppzy AI assistant into Slack and Discord. Settings come from the environment "
        "and .env (see .env.example).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("run", help="run the bot for Slack and/or Discord (whichever tokens are set)")
    demo = sub.add_parser("demo", help="chat in this terminal with a simulated Uppzy site (no accounts needed)")
    demo.add_argument("--db", default="uppzy-demo.db", help="SQLite file for the demo (default: %(default)s)")
    demo.add_argument("--latency", type=_range, default=(0.8, 2.5), metavar="MIN-MAX",
                      help="simulated answer latency in seconds (default: 0.8-2.5)")
    demo.add_argument("--idle", default="2m", help="close the session after this much silence (default: 2m)")
    demo.add_argument("--external", action="store_true",
                      help="talk to the Uppzy named by UPPZY_BASE_URL/UPPZY_API_KEY/UPPZY_SITE_ID instead")
    demo.add_argument("--drain", type=float, default=30.0, metavar="SECONDS",
                      help="at end of input, wait this long for answers in flight (default: 30)")
    check = sub.add_parser("check", help="staging smoke test of the configured Uppzy, Slack and Discord access")
    check.add_argument("--no-chat", action="store_true", help="skip the async chat round trip")
    check.add_argument("--json", action="store_true", help="print the results as JSON (for CI pipelines)")
    check.add_argument("--workspaces", action="store_true",
                       help="also check every workspace's own Uppzy key against its site (keys are never printed)")
    move = sub.add_parser("migrate-store", help="copy a stopped bot's SQLite database into an empty PostgreSQL one",
                          description="Copies every question (unfinished ones too), session, setting and channel "
                          "mode from a stopped bot's SQLite database into an empty PostgreSQL database, in one "
                          "transaction. The SQLite file is only read.")
    move.add_argument("--to", required=True, metavar="POSTGRESQL_URL",
                      help="the empty target: postgresql://user@host:5432/database (the password may come from "
                      "PGPASSWORD instead of the URL)")
    move.add_argument("--from", dest="source", metavar="SQLITE_URL",
                      help="the SQLite database, sqlite:///path.db (default: DATABASE_URL, as `run` reads it)")
    secrets = sub.add_parser("secrets", help="manage the tokens and keys kept encrypted in the database",
                             description="Tokens and per-workspace Uppzy keys are stored encrypted with SECRETS_KEY.")
    actions = secrets.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("rotate", help="re-encrypt every stored secret with the first SECRETS_KEY key",
                       description="Re-encrypts every stored secret with the first key of SECRETS_KEY, in batches; "
                       "running it again rewrites nothing. Rotating: put the new key first (NEW,OLD), restart the "
                       "bot, run this, then drop OLD.")
    sim = sub.add_parser("simulate", help="serve a local Uppzy M2M API simulator (for demos and tests)")
    sim.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    sim.add_argument("--port", type=int, default=8787, help="port to listen on (default: %(default)s)")
    sim.add_argument("--api-key", default="sim-key", help="the X-API-Key it accepts (default: %(default)s)")
    sim.add_argument("--site-id", default="demo-site", help="the site id it serves (default: %(default)s)")
    sim.add_argument("--tenant-id", default="demo-tenant", help="the tenant id it serves (default: %(default)s)")
    sim.add_argument("--latency", type=_range, default=(2.0, 6.0), metavar="MIN-MAX",
                     help="seconds until an async answer is ready (default: 2-6)")
    sim.add_argument("--seed", type=int, default=None, help="random seed for repeatable runs")
    sim.add_argument("--error-rate", type=_share, default=0.0, help="share of calls answered 5xx")
    sim.add_argument("--rate-limit-rate", type=_share, default=0.0, help="share of calls answered 429")
    sim.add_argument("--retry-after", type=float, default=1.0, help="Retry-After seconds on 429 (default: 1)")
    sim.add_argument("--stall-rate", type=_share, default=0.0, help="share of calls that stall first")
    sim.add_argument("--stall-seconds", type=float, default=30.0, help="how long a stall lasts (default: 30)")
    sim.add_argument("--fail-rate", type=_share, default=0.0, help="share of async requests that end failed")
    sim.add_argument("--key", action="append", default=[], type=_key_binding, metavar="KEY=SITE[,SITE...]",
                     help="an extra API key and the sites it may use (repeatable), as a workspace's own key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `uppzy-bot` and `python -m bots`; Ctrl+C at any moment exits 130 without a traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        configure_logging("INFO")
        return _run_async(_simulate(args))
    from dotenv import load_dotenv

    load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)
    try:
        settings = load_settings(os.environ)
    except ConfigError as exc:
        print(f"uppzy-bot: configuration error: {exc}", file=sys.stderr)
        return 2
    level = settings.log_level
    if args.command == "demo" and not os.environ.get("LOG_LEVEL"):
        level = "WARNING"  # the demo's terminal is for chatting
    elif args.command in ("check", "migrate-store", "secrets") and level != "DEBUG":
        level = "CRITICAL"  # the report is the output: no library's request or retry lines between its lines
    configure_logging(level, settings.log_format, settings.secrets())
    try:
        if args.command == "demo":
            from bots.console.demo import run_demo

            return _run_async(run_demo(settings, args))
        if args.command == "migrate-store":
            return _run_async(_migrate_store(settings, args))
        if args.command == "secrets":
            return _run_async(_rotate_secrets(settings))
        if args.command == "check":
            from bots.check import run_check

            return _run_async(run_check(settings, no_chat=args.no_chat, as_json=args.json,
                                         workspaces=args.workspaces))
        from bots.runner import run_bot

        return _run_async(run_bot(settings))
    except ConfigError as exc:
        print(f"uppzy-bot: configuration error: {exc}", file=sys.stderr)
        return 2


def _run_async(coro: object) -> int:
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        return 130


async def _migrate_store(settings: Settings, args: argparse.Namespace) -> int:
    """`migrate-store`: check both URLs, copy (core/store_copy.py), print what was copied and what to do next."""
    from bots.runner import prepare_postgres
    from core.health import StoreUnavailable
    from core.setting_parsers import POSTGRES_SCHEMES, SettingError, postgres_url, sqlite_path
    from core.store_copy import CopyRefused, copy_sqlite_to_postgres

    def refuse(line: str, code: int = 2) -> int:
        print(f"uppzy-bot migrate-store: {line}", file=sys.stderr)
        return code

    source, where = (args.source.strip(), "--from") if args.source else (settings.database_url, "DATABASE_URL")
    if source.startswith(POSTGRES_SCHEMES):
        return refuse(f"{where} names PostgreSQL ({shown_url(source)}): migrate-store copies from a SQLite "
                      "database; name it with --from sqlite:///path/to/uppzy-bot.db")
    target = args.to.strip()
    try:
        path = sqlite_path(source)
    except SettingError as exc:
        return refuse(f"{where} {exc}")
    if not target.startswith(POSTGRES_SCHEMES):
        return refuse(f"--to must be a PostgreSQL URL, postgresql://user:password@host:5432/database (got "
                      f"{shown_url(target) if '://' in target else repr(target[:60])})")
    try:
        postgres_url(target)
    except SettingError as exc:
        return refuse(f"--to {exc}")
    try:
        report = await copy_sqlite_to_postgres(path, target, lambda: prepare_postgres(target))
    except CopyRefused as exc:
        option = {"source": where, "target": "--to"}.get(exc.side or "")
        return refuse(f"{option}: {exc}" if option else str(exc), exc.exit_code)
    except ConfigError as exc:  # opening or migrating the target (its text names host:port/db, never a password)
        return refuse(f"--to: {str(exc).split(': ', 1)[-1]}")
    except StoreUnavailable as exc:  # not reachable now: a one-off command does not wait for it as `run` does
        return refuse(f"--to: {exc}")
    rows = report.rows
    print(f"Copied {path} into PostgreSQL {shown_url(target)} (the SQLite file was only read):")
    print(f"  questions: {rows['turns']} ({report.unfinished} unfinished: the first replica to start resumes them)")
    print(f"  sessions: {rows['sessions']} ({report.open_sessions} open)")
    print(f"  answer links: {rows['answer_messages']}, feedback: {rows['feedback']}")
    print(f"  workspace settings: {rows['workspace_settings']}, channel modes: {rows['channel_modes']}")
    print(f"  installations: {rows['installations']}, workspace credentials: {rows['workspace_credentials']} "
          "(still sealed: keep the same SECRETS_KEY)")
    print("Next: set DATABASE_URL to the PostgreSQL URL and start the replicas. Keep the SQLite file until they "
          "have answered what was unfinished; do not start a bot on it again.")
    return 0


async def _rotate_secrets(settings: Settings) -> int:
    """`secrets rotate`: every sealed value in the store re-encrypted with the first SECRETS_KEY key, in batches."""
    from bots.runner import open_store
    from core.health import StoreUnavailable
    from core.secrets_box import GENERATE_FERNET_KEY, SecretBox, SecretUnreadable

    def refuse(line: str, code: int = 2) -> int:
        print(f"uppzy-bot secrets rotate: {line}", file=sys.stderr)
        return code

    if not settings.secrets_key:
        return refuse("SECRETS_KEY is not set: it lists the keys, the new one first, then the old ones (comma-"
                      f"separated); generate a key with: {GENERATE_FERNET_KEY}")
    box = SecretBox.from_setting(settings.secrets_key.reveal())
    store = await open_store(settings, wait=0)  # a one-off command does not wait for a database as `run` does
    already = 0

    def reseal(sealed: str) -> str | None:
        nonlocal already
        fresh = box.reseal(sealed)
        already += fresh is None
        return fresh

    try:
        rewritten = await store.reseal_secrets(reseal)
    except SecretUnreadable as exc:
        return refuse(str(exc))
    except StoreUnavailable as exc:
        return refuse(f"DATABASE_URL: {exc} (what was re-encrypted so far stays; run it again)", 1)
    finally:
        await store.close()
    print(f"{rewritten} secrets re-encrypted with the first SECRETS_KEY key ({already} already were)")
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    from simulator import Simulator, SimulatorConfig

    sim = Simulator(SimulatorConfig(
        api_key=args.api_key, sites=(args.site_id,), tenant_id=args.tenant_id, latency=args.latency,
        seed=args.seed, error_rate=args.error_rate, rate_limit_rate=args.rate_limit_rate,
        retry_after=args.retry_after, stall_rate=args.stall_rate, stall_seconds=args.stall_seconds,
        fail_rate=args.fail_rate, keys=dict(args.key),
    ))
    try:
        base = await sim.start(args.host, args.port)
    except OSError as exc:
        print(f"uppzy-bot simulate: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"Uppzy simulator on {base}  (site {args.site_id}, tenant {args.tenant_id}, key {args.api_key})")
    print(f"  UPPZY_BASE_URL={base} UPPZY_SITE_ID={args.site_id} UPPZY_API_KEY={args.api_key}")
    print(f"  try: curl -s -X POST -H 'X-API-Key: {args.api_key}' -H 'Content-Type: application/json' "
          f"-d '{{\"session_id\":\"s1\",\"message\":\"how do returns work?\"}}' "
          f"{base}/m2m/sites/{args.site_id}/chat/async")
    print("Press Ctrl+C to stop.", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sim.stop()
    return 0
