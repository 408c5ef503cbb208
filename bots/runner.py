"""The composition root: the only place that builds core's components and the platform bots, and `uppzy-bot run`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import itertools
import logging
import os
import secrets
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bots.connect import Connector
from core.adaptive_budget import AdaptiveBudget
from core.backoff import Backoff
from core.config import ConfigError, Secret, Settings
from core.connect import Connector as WorkspaceConnect
from core.conversations import Conversations
from core.credentials import UppzyCredentials, WorkspaceCredentials
from core.delivery import Delivery
from core.feedback import Feedback
from core.health import StoreUnavailable
from core.intake import Intake
from core.latency import LatencyModel
from core.membership import Membership
from core.metrics import Metrics
from core.models import Notice, SessionRow
from core.platforms import Platforms
from core.poll_lanes import PollLanes
from core.poller import PollScheduler
from core.ports import RateBudget, Store, WorkspaceConnector
from core.ratelimit import LocalBudget
from core.reaper import IdleReaper
from core.relay import Components, Relay
from core.retry import RetryPolicy
from core.routing import Router
from core.secrets_box import SecretBox
from core.sqlite_store import SqliteStore
from core.submission import Submitter
from core.supervisor import TaskSupervisor
from core.tuning import Tuning
from core.uppzy import UppzyClient
from core.uppzy_pool import Connections, UppzyPool
from core.uppzy_types import Timeouts
from core.workspace import WorkspaceSettingsService

if TYPE_CHECKING:
    from bots.web import WebServer

__all__ = ["GC_YOUNG", "Core", "PlatformBot", "build_connector", "build_platforms", "build_relay",
           "build_slack_distribution", "build_uppzy", "check_run_settings", "open_core", "open_store", "run_bot",
           "uppzy_key_check"]

log = logging.getLogger(__name__)
GC_YOUNG = 10_000  # allocations between young-generation collections while running (the default is 700)
DATABASE_WAIT = 60.0  # how long `run` waits for a PostgreSQL server that cannot be reached yet
DATABASE_BACKOFF = Backoff(attempts=0, initial=0.5, maximum=10.0)


class PlatformBot(Protocol):
    """A running platform connection (Slack app, Discord client) as the runner sees it."""

    name: str

    async def start(self) -> None:
        """Connect and begin delivering events to the relay; raise ConfigError for operator mistakes."""

    async def stop(self) -> None:
        """Stop taking events and close connections."""

    @property
    def connected(self) -> bool:
        """True while events can arrive (for /readyz)."""
        ...


def build_uppzy(settings: Settings, *, metrics: Metrics | None = None, retry: RetryPolicy | None = None,
                timeouts: Timeouts | None = None, key: tuple[Secret, str] | None = None,
                max_connections: int = 100) -> UppzyClient:
    """An Uppzy client from settings (its calls observed by `metrics`): the deployment's key and site, or `key`'s
    (a workspace's own key and site, or one being checked; no tenant id then)."""
    tenant_id = settings.uppzy_tenant_id if key is None else None
    if key is None:
        assert settings.uppzy_api_key is not None and settings.uppzy_site_id
        key = settings.uppzy_api_key, settings.uppzy_site_id
    return UppzyClient(
        base_url=settings.uppzy_base_url, api_key=key[0], site_id=key[1], tenant_id=tenant_id,
        timeouts=timeouts or Timeouts(settings.uppzy_connect_timeout, settings.uppzy_timeout,
                                      settings.uppzy_chat_timeout),
        retry=retry or RetryPolicy(attempts=settings.uppzy_max_attempts, budget=settings.uppzy_retry_budget),
        observer=metrics.observe_call if metrics is not None else None, max_connections=max_connections,
    )


def uppzy_key_check(settings: Settings, *, timeouts: Timeouts | None = None,
                    retry: RetryPolicy | None = None) -> Callable[[str, Secret], Awaitable[None]]:
    """`check(site_id, key)`: reads the site with a throwaway Uppzy client for that key; returns when Uppzy accepts
    the key for the site, else raises its UppzyError (401, 403, 404, unreachable …)."""
    timeouts = timeouts or Timeouts(min(settings.uppzy_connect_timeout, 2.0), min(settings.uppzy_timeout, 2.5),
                                    settings.uppzy_chat_timeout)
    retry = retry or RetryPolicy(attempts=1, budget=timeouts.default)

    async def check(site_id: str, key: Secret) -> None:
        async with build_uppzy(settings, timeouts=timeouts, retry=retry, key=(key, site_id),
                               max_connections=2) as client:
            await client.site(site_id)

    return check


def build_connector(settings: Settings, store: Store, *,
                    on_change: Callable[[str, str], None] = lambda platform, workspace: None,
                    check_key: Callable[[str, Secret], Awaitable[None]] | None = None) -> WorkspaceConnector:
    """What admins' "Connect Uppzy" runs: keys checked against Uppzy, sealed with SECRETS_KEY (none set: the admin
    is told the deployment must set it). `on_change` is the credentials cache's invalidate."""
    box = SecretBox.from_setting(settings.secrets_key.reveal()) if settings.secrets_key else None
    return WorkspaceConnect(store, box, check_key or uppzy_key_check(settings), on_change)


@dataclass
class Core:
    """What one process runs on: the store, the Uppzy client and the relay, sharing one metrics registry."""

    store: Store
    uppzy: UppzyClient | None  # None: no deployment key ("Add to Slack", every workspace connects its own)
    relay: Relay
    metrics: Metrics

    async def aclose(self) -> None:
        """Stop the relay (its state is durable), then close the clients and the store."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await self.relay.stop(drain=1.5)  # submits on their way to Uppzy finish, none comes back "lost"
        await self.relay.connections.pool.aclose()  # workspaces' own clients (the deployment's is closed next)
        if self.uppzy is not None:
            await self.uppzy.aclose()
        await self.store.close()


async def open_core(settings: Settings, *, path: str | None = None, tuning: Tuning | None = None,
                    stop: asyncio.Event | None = None) -> Core:
    """Open the store and build the Uppzy client and the relay on one metrics registry (not started yet)."""
    metrics = Metrics(workspace_labels=settings.metrics_workspace_labels)
    store = await open_store(settings, path, stop=stop)
    # Without a deployment key (only in "Add to Slack" mode) every workspace must connect its own.
    uppzy = build_uppzy(settings, metrics=metrics) if settings.uppzy_api_key and settings.uppzy_site_id else None
    return Core(store, uppzy, build_relay(settings, store, uppzy, metrics=metrics, tuning=tuning), metrics)


async def open_store(settings: Settings, path: str | None = None, *, stop: asyncio.Event | None = None,
                     wait: float = DATABASE_WAIT) -> Store:
    """The store DATABASE_URL names (a SQLite file, or PostgreSQL shared by replicas), migrated and ready.

    A PostgreSQL server that cannot be reached yet (starting with the rest of the deployment) is waited for with
    backoff for `wait` seconds, a log line per attempt; then, or for a refused login, it is a ConfigError (exit 2).
    """
    if not settings.uses_postgres or path is not None:
        return await SqliteStore.open(path or settings.database_path)
    from core.postgres_store import PostgresStore  # asyncpg is loaded only by deployments that use it

    stop = stop or asyncio.Event()
    started = time.monotonic()
    for attempt in itertools.count(1):
        try:
            return await PostgresStore.open(settings.database_url, holder=replica_name(),
                                            min_size=min(settings.database_pool_min, settings.database_pool_max),
                                            max_size=settings.database_pool_max)
        except StoreUnavailable as exc:
            waited = time.monotonic() - started
            if waited >= wait or stop.is_set():
                raise ConfigError("DATABASE_URL", f"{exc} (waited {waited:.0f}s); check that PostgreSQL runs and "
                                                  "DATABASE_URL's host and port") from None
            delay = min(DATABASE_BACKOFF.delay(attempt), wait - waited)
            log.warning("%s; trying again in %.1fs", exc, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    raise AssertionError("unreachable")


def replica_name() -> str:
    """This process's name among replicas: host (the pod), pid and a random part (a restart is a new replica)."""
    return f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"


async def prepare_postgres(url: str) -> None:
    """Create or update the schema of the PostgreSQL database at `url` as a replica's start does, then let go: the
    target of `uppzy-bot migrate-store`."""
    from core.postgres_store import PostgresStore

    store = await PostgresStore.open(url, holder=f"migrate-store-{replica_name()}", min_size=1, max_size=1)
    await store.close()


def build_relay(settings: Settings, store: Store, uppzy: UppzyClient | None, *, metrics: Metrics | None = None,
                tuning: Tuning | None = None, clock: Callable[[], float] = time.time,
                box: SecretBox | None = None) -> Relay:
    """Build every core component once and wire them: the relay is their Inbound port.

    `uppzy` is the deployment's client (UPPZY_API_KEY; None when there is none): questions of workspaces without
    their own Uppzy connection use it. A workspace connected to its own key (opened with `box`, by default the box
    of SECRETS_KEY) gets a pooled client of its own and its own status and close budgets.
    """
    tuning = tuning or Tuning()
    metrics = metrics or Metrics(workspace_labels=settings.metrics_workspace_labels)
    tasks = TaskSupervisor("relay")
    workspaces = WorkspaceSettingsService(store, settings, clock=clock)
    platforms = Platforms(tuning.notice, working_after=tuning.working_after)
    connections = _connections(settings, store, uppzy, metrics, box)
    default_creds = connections.credentials.default
    sequencer: list[Intake] = []  # intake and delivery call each other: bound once both exist

    def finished(session_id: str) -> None:
        sequencer[0].finished(session_id)

    def later(session_id: str, delay: float) -> None:
        sequencer[0].advance_later(session_id, delay)

    delivery = Delivery(store=store, platforms=platforms, workspaces=workspaces, metrics=metrics, tasks=tasks,
                        backoff=tuning.delivery, answer_timeout=settings.uppzy_answer_timeout, finished=finished,
                        clock=clock, answer_max_chars=settings.uppzy_answer_max_chars,
                        retry_every=tuning.redeliver_every, retry_for=tuning.redeliver_for,
                        sweep_every=tuning.sweep_every, redelivery=tuning.redelivery,
                        store_writes=tuning.store_writes)
    # With replicas (a shared store) both budgets are the whole deployment's, kept in the database. Each Uppzy key
    # has its own status budget (its tenant's limit): the deployment key's ledger keeps its name "uppzy-status",
    # a workspace key's is "uppzy-status:" + the key's fingerprint (never the key).
    shared = store.shared
    ceiling = settings.uppzy_poll_rate  # the status budget learns Uppzy's limit below it (core/adaptive_budget.py)
    ticks = time.monotonic if clock is time.time else clock  # a virtual clock (tests) drives the budget too

    def status_budget(name: str) -> AdaptiveBudget:
        inner = store.budget(name, ceiling) if shared else LocalBudget(ceiling, clock=ticks)
        return AdaptiveBudget(inner, ceiling=ceiling, start=tuning.poll_rate_start, floor=tuning.poll_rate_floor,
                              clock=ticks)

    def scheduler(client: object, budget: AdaptiveBudget) -> PollScheduler:
        return PollScheduler(uppzy=client, on_done=delivery.on_status,  # type: ignore[arg-type]
                             on_expired=delivery.on_expired, budget=budget, interval=tuning.poll_interval,
                             clock=clock, latency=tuning.latency or LatencyModel(floor=tuning.first_poll_floor),
                             first_poll_floor=tuning.first_poll_floor, error_backoff=tuning.poll_errors,
                             batch=tuning.poll_batch)

    default_budget = status_budget("uppzy-status")
    metrics.poll_rate.set_function(lambda: default_budget.rate)
    default_client = connections.pool.client(default_creds) if default_creds is not None else None
    poller = PollLanes(
        scheduler(default_client, default_budget),
        lambda creds: scheduler(connections.pool.client(creds), status_budget(f"uppzy-status:{creds.key_id}")),
        default_key=default_creds.key_id if default_creds is not None else None,
    )
    submission = Submitter(store=store, connections=connections, poller=poller, fail=delivery.fail, later=later,
                           tasks=tasks, answer_timeout=settings.uppzy_answer_timeout,
                           concurrency=tuning.submit_concurrency, store_writes=tuning.store_writes, clock=clock)
    # With "Add to Slack" each Slack workspace is its own tenant: their conversations never share a session.
    router = Router(store, workspaces, connections, separate=frozenset({"slack"}) if settings.slack_oauth else
                    frozenset())
    sequencer.append(Intake(store=store, router=router, platforms=platforms,
                            submit=submission.submit, metrics=metrics, tasks=tasks, max_chars=tuning.max_chars,
                            clock=clock))

    async def notify(row: SessionRow, notice: Notice) -> None:
        if row.last_target is not None:
            await platforms.post_notice(row.last_target, notice)

    def closed(row: SessionRow, reason: str) -> None:
        metrics.sessions_closed.labels(row.platform, reason).inc()

    def close_budget(creds: UppzyCredentials) -> RateBudget:
        rate = settings.session_close_rate
        return store.budget(f"session-close:{creds.key_id}", rate) if shared else LocalBudget(rate)

    membership = Membership(store=store, lease=settings.replica_lease, clock=clock)
    reaper = IdleReaper(store=store, connections=connections, notify=notify,
                        default_idle=settings.session_idle_timeout, close_rate=settings.session_close_rate,
                        clock=clock, on_closed=closed,
                        pace=store.budget("session-close", settings.session_close_rate) if shared else None,
                        leading=membership.leading, paces=close_budget)
    metrics.pending.set_function(lambda: len(poller))
    return Relay(Components(
        store=store, workspaces=workspaces, platforms=platforms, intake=sequencer[0], submission=submission,
        delivery=delivery, poller=poller, reaper=reaper, membership=membership, tasks=tasks,
        feedback=Feedback(store=store, connections=connections, workspaces=workspaces, platforms=platforms,
                          metrics=metrics, tasks=tasks, takeover_after=tuning.feedback_takeover, clock=clock),
        conversations=Conversations(store=store, connections=connections, workspaces=workspaces, reaper=reaper,
                                    router=router),
        answer_timeout=settings.uppzy_answer_timeout, recovery_grace=tuning.recovery_grace,
        connections=connections, clock=clock,
    ))


def _connections(settings: Settings, store: Store, uppzy: UppzyClient | None, metrics: Metrics,
                 box: SecretBox | None) -> Connections:
    """Workspaces' own Uppzy keys (sealed in the store) over the deployment's, and the bounded pool of clients: a
    workspace key's client is built like the deployment's (its timeouts, retries and metrics), with that key."""
    default = None
    if uppzy is not None and settings.uppzy_api_key is not None:
        default = UppzyCredentials(settings.uppzy_site_id or uppzy.site_id, settings.uppzy_api_key)
    if box is None and settings.secrets_key is not None:
        box = SecretBox.from_setting(settings.secrets_key.reveal())

    def factory(api_key: Secret, site_id: str) -> UppzyClient:
        return build_uppzy(settings, metrics=metrics, key=(api_key, site_id),
                           timeouts=uppzy.timeouts if uppzy is not None else None,
                           retry=uppzy.retry if uppzy is not None else None)

    pool = UppzyPool(factory, default=uppzy, default_key=default.key_id if default is not None else None)
    return Connections(WorkspaceCredentials(store, box, default), pool)


def build_platforms(settings: Settings, relay: Relay, store: Store | None = None,
                    connector: WorkspaceConnector | None = None,
                    forget: Callable[[str, str], Awaitable[None]] | None = None) -> list[PlatformBot]:
    """A bot for each platform whose token is set (Slack: or whose OAuth client settings are, on `store`); with
    `connector`, admins may connect their workspace to its own Uppzy site and key."""
    bots: list[PlatformBot] = []
    if settings.slack_bot_token:
        from bots.slack.app import SlackBot

        slack = SlackBot(settings, relay)
        slack.admin.connector = connector
        bots.append(slack)
    elif settings.slack_oauth and store is not None:
        slack = build_slack_distribution(settings, relay, store, forget=forget)
        slack.admin.connector = connector  # type: ignore[attr-defined]
        bots.append(slack)
    if settings.discord_bot_token:
        from bots.discord.app import DiscordBot

        bots.append(DiscordBot(settings, relay, connector=connector, forget=forget))
    return bots


def build_slack_distribution(settings: Settings, relay: Relay, store: Store,
                             forget: Callable[[str, str], Awaitable[None]] | None = None) -> PlatformBot:
    """The Slack app for "Add to Slack" distribution: installations on `store`, sealed with SECRETS_KEY; an
    uninstall is forgotten with `forget` (run_bot's connector, as for Discord; by default one built here)."""
    from bots.slack.app import SlackBot
    from bots.slack.installations import StoreInstallations
    from core.redaction import register_secret
    from core.secrets_box import SecretBox

    if not settings.secrets_key:
        raise ConfigError("SECRETS_KEY", "is required for \"Add to Slack\" distribution")
    box = SecretBox.from_setting(settings.secrets_key.reveal())
    # An uninstalled workspace's own Uppzy key and settings are dropped from the caches at once here (other
    # replicas: the same notice on PostgreSQL; the credentials cache expires after 30 s in any case).
    if forget is None:
        forget = build_connector(settings, store, on_change=lambda platform, workspace: _reread(relay, platform,
                                                                                                workspace)).forget
    return SlackBot(settings, relay, installations=StoreInstallations(store, box, on_secret=register_secret),
                    forget=forget)


def _reread(relay: Relay, platform: str, workspace: str) -> None:
    """A workspace connected, or was forgotten: its cached Uppzy connection and settings are read again."""
    relay.connections.credentials.invalidate(platform, workspace)
    relay.workspaces.forget(platform, workspace)


def check_run_settings(settings: Settings) -> None:
    """What `run` needs before anything is opened: Uppzy (optional with "Add to Slack" distribution, where each
    workspace may connect its own), a platform, Slack HTTP mode's signing secret (and OAuth mode's SECRETS_KEY), and
    Discord shard ids that exist."""
    settings.check_slack_oauth()
    if not settings.slack_oauth:
        settings.require("UPPZY_API_KEY", "UPPZY_SITE_ID")
    if settings.slack_mode_conflict:
        log.warning("%s", settings.slack_mode_conflict)
    if not settings.slack_bot_token and not settings.slack_oauth and not settings.discord_bot_token:
        raise ConfigError("SLACK_BOT_TOKEN", "set SLACK_BOT_TOKEN (or SLACK_CLIENT_ID and SLACK_CLIENT_SECRET for "
                                             "\"Add to Slack\") and/or DISCORD_BOT_TOKEN to choose a platform")
    if settings.slack_bot_token and not settings.slack_app_token and not settings.slack_signing_secret:
        raise ConfigError("SLACK_SIGNING_SECRET", "is required for HTTP mode (or set SLACK_APP_TOKEN to use Socket "
                                                  "Mode); copy it from the app's Basic Information page")
    settings.check_discord_shards()


async def run_bot(settings: Settings, *, stop: asyncio.Event | None = None,
                  started: asyncio.Event | None = None, host: str = "0.0.0.0",
                  connect_backoff: Backoff | None = None) -> int:
    """Run until SIGTERM/SIGINT (or `stop`), then shut down within ~10 s; unfinished work resumes next start.

    Operator mistakes raise ConfigError (exit 2), also when found while retrying; a platform that cannot be
    reached is retried in the background while /readyz reports it not ready.
    """
    check_run_settings(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    core = await open_core(settings, stop=stop)
    store, relay, metrics = core.store, core.relay, core.metrics
    # Admins connect their own Uppzy where secrets can be stored (SECRETS_KEY set); without it nothing changes.
    # A connect applies from the next question: it drops the workspace's cached credentials.
    # A server the bot is removed from is forgotten in every mode; only connecting needs SECRETS_KEY.
    forgetter = build_connector(settings, store, on_change=lambda platform, workspace: _reread(relay, platform,
                                                                                               workspace))
    admin_connect = forgetter if settings.secrets_key else None
    bots = build_platforms(settings, relay, store, admin_connect, forget=forgetter.forget)
    routes = [route for bot in bots if getattr(bot, "mode", None) == "http" for route in bot.http_routes()]  # type: ignore[attr-defined]
    checks: dict[str, Callable[[], Awaitable[bool] | bool]] = {"store": _StoreCheck(store)}
    for bot in bots:
        checks[bot.name] = lambda bot=bot: bot.connected  # type: ignore[misc]
        metrics.platform_up.labels(bot.name).set_function(lambda bot=bot: 1.0 if bot.connected else 0.0)  # type: ignore[misc]
    from bots.web import WebServer  # the web stack is needed by `run` only, not by demo, check or benchmarks

    web = WebServer(metrics=metrics, checks=checks, routes=routes)
    connector = Connector(bots, tasks=TaskSupervisor("platform-connect"), stop=stop,
                        **({"backoff": connect_backoff} if connect_backoff else {}))
    thresholds = gc.get_threshold()
    try:
        await _listen(web, host, settings.port)
        await relay.start()
        # The first connection attempts may take a while (an outage): a stop meanwhile must not wait for them.
        connecting = asyncio.ensure_future(connector.start())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not connecting.done():
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        else:
            connecting.result()  # a configuration error found on the first attempt ends the run (exit 2)
        if started is not None and not stop.is_set():
            started.set()
        # What start-up built (modules, clients, caches) lives as long as the process: moved out of the collector's
        # view, a full collection under a burst walks only what the burst made (it took ~20 ms, holding every ack).
        gc.collect()
        gc.freeze()
        # A burst allocates fast and frees almost everything it allocates (requests, responses, events): at the
        # default 700 allocations per young collection the collector ran hundreds of times a second for little.
        gc.set_threshold(GC_YOUNG, *thresholds[1:])
        await stop.wait()
        log.info("shutting down: no new events; unfinished work stays in the store for the next start")
    finally:
        gc.unfreeze()  # back to the collector (several runs in one process: tests)
        gc.set_threshold(*thresholds)
        await connector.aclose()
        await _shutdown(bots, core, web)
    if connector.fatal is not None:
        raise connector.fatal
    return 0


async def _listen(web: WebServer, host: str, port: int) -> None:
    """Open PORT; a port in use or not allowed is one ConfigError line (exit 2), not a traceback."""
    try:
        await web.start(host, port)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        hint = " (another uppzy-bot or another service is using it?)" if exc.errno == errno.EADDRINUSE else ""
        raise ConfigError("PORT", f"cannot listen on {host}:{port}: {reason}{hint}; choose another PORT") from None


class _StoreCheck:
    """Ready while a real write goes through and the database file is the one opened (store.health says why not).

    The write probe runs at most every `every` seconds: /readyz is public, and a flood of it must not become a flood
    of database writes queued in front of the questions.
    """

    def __init__(self, store: Store, every: float = 2.0) -> None:
        self._store = store
        self._every = every
        self._last = float("-inf")

    async def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            await self._store.probe()
        return self._store.health.ok


async def _shutdown(bots: list[PlatformBot], core: Core, web: WebServer) -> None:
    """Platforms first (stop taking events), then the relay (its state is durable), then connections."""
    try:
        async with asyncio.timeout(6):
            await asyncio.gather(*(bot.stop() for bot in reversed(bots)), return_exceptions=True)
    except TimeoutError:
        log.warning("a platform did not stop within 6s; closing anyway")
    await core.aclose()
    with contextlib.suppress(Exception):
        await web.stop()
