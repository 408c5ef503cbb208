"""The ports of core, written down: what adapters call (Inbound), what core asks of platforms and of storage.

Adapters (bots/slack, bots/discord, bots/console) import core only through this module and core.models; the
composition root (bots/runner.py) is the only place that builds core's components.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from core.health import StoreHealth
from core.messages import SESSION_ENDED, human_duration
from core.models import (
    Accepted,
    Answer,
    Counts,
    FeedbackClaim,
    FeedbackEvent,
    FeedbackResult,
    HumanRequest,
    HumanResult,
    Ignored,
    InboundMessage,
    Notice,
    Rejected,
    ReplyTarget,
    SessionRow,
    Turn,
    TurnState,
)
from core.uppzy_types import SessionInfo
from core.workspace import CHANNEL_MODES, SETTING_KEYS, SettingError, SettingSpec, WorkspaceSettings
from core.workspace import WorkspaceSettingsService as _Workspaces

__all__ = [
    "CHANNEL_MODES",
    "SESSION_ENDED",
    "SETTING_KEYS",
    "ChatPlatform",
    "ConnectResult",
    "EndResult",
    "Inbound",
    "RateBudget",
    "SessionInfo",
    "SettingError",
    "SettingSpec",
    "StatusReport",
    "Store",
    "WorkspaceConnector",
    "WorkspaceSettings",
    "human_duration",
    "setting_spec",
]


def setting_spec(key: str) -> SettingSpec | None:
    """The spec (parser, accepted values, help) of an admin setting, for forms and autocomplete."""
    return _Workspaces.spec(key)


class EndResult(StrEnum):
    """What ending a conversation did."""

    ENDED = "ended"
    NO_SESSION = "no_session"
    BUSY = "busy"


class StatusReport(Protocol):
    """What `/uppzy status` shows an admin (core.conversations.Status implements it)."""

    settings: list[tuple[str, str, str]]
    uppzy_ok: bool
    uppzy_detail: str
    pending: int
    open_sessions: int


# ---- driving side: what adapters call --------------------------------------------------------------------------


class Inbound(Protocol):
    """The one entry into core for adapters: neutral events in, typed outcomes out. Never raises for bad input."""

    def register(self, platform: ChatPlatform) -> None:
        """Attach a platform so answers for its conversations can be posted (late joiners get their backlog)."""

    async def handle_message(self, msg: InboundMessage) -> Accepted | Rejected | Ignored:
        """Decide whether `msg` is a question (routing), record it durably and start work; returns at once.

        A redelivered event (same platform and event_key) is `Rejected(duplicate=True)` and changes nothing.
        """
        ...

    async def handle_feedback(self, event: FeedbackEvent) -> FeedbackResult:
        """Turn a reaction or button on an answer into Uppzy feedback, at most once per answer."""
        ...

    async def request_human(self, request: HumanRequest) -> HumanResult:
        """Someone wants a person to look at an answer: notify the workspace's `escalation_target` (the platform's
        `escalate`, with `requested_by`), once per answer per process; counted in uppzy_bot_human_requests_total.
        NOT_CONFIGURED when the workspace names nobody. Anyone who sees the answer may ask. Never raises."""
        ...

    async def end_conversation(self, target: ReplyTarget) -> EndResult:
        """Close the caller's session for this conversation now; the next message starts a fresh one."""
        ...

    async def list_sessions(self, platform: str, workspace_id: str, email: str | None,
                            user_id: str | None = None) -> list[SessionInfo]:
        """Uppzy's sessions for a workspace's site: by email when given, else this user's sessions that this
        workspace opened (never a DM's or another workspace's)."""
        ...

    async def status_report(self, platform: str, workspace_id: str) -> StatusReport:
        """Settings, Uppzy reachability and counts of one workspace."""
        ...

    async def settings(self, platform: str, workspace_id: str) -> WorkspaceSettings:
        """The effective settings of a workspace."""
        ...

    async def describe_settings(self, platform: str, workspace_id: str) -> list[tuple[str, str, str]]:
        """(key, current value as typed, what it does) for every admin setting."""
        ...

    async def set_setting(self, platform: str, workspace_id: str, key: str, raw: str, *, by: str | None) -> str:
        """Validate and store one setting; returns how it now reads. Raises SettingError saying what is accepted."""
        ...

    async def reset_setting(self, platform: str, workspace_id: str, key: str, *, by: str | None) -> str:
        """Drop an override so the environment default applies again; returns how the default reads.
        Raises SettingError for unknown keys."""
        ...

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str:
        """How the bot listens in one channel: its own mode, else the workspace default."""
        ...

    async def set_channel_mode(self, platform: str, workspace_id: str, channel_id: str, raw: str, *,
                               by: str | None) -> str:
        """Set one channel's mode; raises SettingError listing the accepted modes."""
        ...


# ---- driven side: what core asks of each platform ---------------------------------------------------------------


@runtime_checkable
class ChatPlatform(Protocol):
    """What core asks of a platform; every method may raise, and core retries or logs."""

    platform: str
    feedback_emoji: tuple[tuple[str, ...], tuple[str, ...]]  # (good, bad) default reaction names on this platform

    async def show_working(self, target: ReplyTarget) -> bool | None:
        """Show that an answer is on its way (reaction, typing, status); False when it chose to show nothing (e.g.
        beyond what the platform's rate limits allow), so that nothing is taken away later either."""

    async def clear_working(self, target: ReplyTarget) -> None:
        """Take the working indicator away again."""

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Post the answer in the question's thread; return the ids of every message posted.

        `recovering` is True when a previous attempt may have posted already (crash mid-post): the adapter
        should use `answer.delivery_key` to avoid a second copy where the platform allows it.
        """
        ...

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """Post a short non-answer line (error, idle close, text only) in the conversation."""

    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str, *,
                       requested_by: str | None = None) -> None:
        """Tell the configured people that an answer was rated bad (`requested_by` None) or that this user asked to
        talk to a human about it, with a link to the thread. Core passes `requested_by` only for the latter."""

    async def user_email(self, workspace_id: str, user_id: str) -> str | None:
        """The asker's email address, asked only when the workspace sends emails to Uppzy; None if unknown."""
        ...


# ---- driven side: durable state ---------------------------------------------------------------------------------


class RateBudget(Protocol):
    """At most `rate` calls in any one-second window: Uppzy status polls, session closes. A store shared by several
    processes hands out one budget for all of them (core.ports.Store.budget)."""

    rate: float
    valid: float  # a granted call must start within this many seconds of its grant, or not at all

    async def grant(self, want: int) -> int:
        """Up to `want` calls that may start now (0 when the window is full); each granted call starts at once."""
        ...

    def wait_time(self) -> float:
        """Seconds until `grant` can give more, as far as this process knows (0: ask now)."""
        ...

    async def pause(self, seconds: float) -> None:
        """Uppzy said slow down: no grants for about `seconds`, in every process sharing the budget."""


class Store(Protocol):
    """Durable state of questions, sessions, feedback and settings.

    Contracts every implementation keeps (tests/test_store_contract.py pins them):
    - Every method is atomic: it happens entirely or not at all, also when the caller is cancelled mid-call.
    - `claim_*` methods are compare-and-set: of any number of concurrent callers exactly one gets True/None
      (the claim), the rest see that it is taken. A claim is a durable state change, not a lock held in memory.
    - Timestamps are seconds since the epoch passed in by core (`now`); the store never reads a clock, and no
      business rule (timeouts, takeovers, id formats) lives in the store.
    - Turn ids grow with arrival, so ordering by id is asking order.
    - A finished question (ANSWERED or FAILED) never changes state again: every state write on it is a no-op, so
      a write retried late (after the store recovered) cannot reopen it.
    - How many processes may share one database is the implementation's to say and to enforce at open:
      SqliteStore allows one (an exclusive lock on the resolved database file); PostgresStore any number (replicas).
    - Work is claimed, not owned: every unfinished question has a holder, the process working on it (`holder`).
      `record_question` makes this process the holder, and so does a successful `claim_submit`. A process keeps
      a lease (`renew`); when it lapses, another process may `adopt` its unfinished questions. `undelivered` is
      only this process's. A store used by one process alone (`shared` False) has one holder: itself.
    - Opening a store that cannot be written is a ConfigError naming DATABASE_URL (the bot must not take
      questions it cannot keep). A write that fails because the store cannot be written now (disk full,
      read-only, I/O error) raises core.health.StoreUnavailable and sets `health`; the next successful write
      clears it.
    """

    health: StoreHealth  # whether writes work right now (readiness, and one loud log line a minute when not)
    shared: bool  # several processes may use this store at once (leases, adoption and leader jobs matter)
    holder: str  # this process's name in the store, unique per process start

    async def renew(self, *, now: float, lease: float) -> bool:
        """Keep this process's lease until `now + lease`; the first call registers the process. False when the
        lease had lapsed before this call (another process may have adopted its questions since): it is renewed
        all the same, and core resumes only what is still this process's (`adopt(mine=True)`)."""
        ...

    async def adopt(self, *, now: float, mine: bool = False, orphans: bool = True,
                    limit: int | None = None) -> list[Turn]:
        """Make this process the holder of unfinished questions whose holder's lease lapsed before `now` (or who
        stopped cleanly) when `orphans`, and return them, oldest first; with `mine`, also every unfinished question
        this process already holds. Never takes a question from a process whose lease runs. Concurrent callers never
        get the same question; `limit` caps how many are taken (None: all). A store of one process returns every
        unfinished question with `mine`, and none without."""
        ...

    async def lead(self, job: str, *, now: float, lease: float) -> bool:
        """Take or keep the lease of a singleton job (the idle reaper) until `now + lease`: True while this process
        has it. Another process gets it only once it lapsed. A store of one process: always True."""
        ...

    def budget(self, name: str, rate: float) -> RateBudget:
        """The call budget `name` shared by every process on this store: together at most `rate` calls in any
        one-second window (a store of one process: a budget of this process)."""
        ...

    async def watch_settings(self, changed: Callable[[str | None, str | None], None]) -> None:
        """From now on call `changed(platform, workspace_id)` when any process changes that workspace's settings or
        channel modes, and `changed(None, None)` when changes may have been missed (a lost connection). A store of
        one process never calls it."""

    async def record_question(self, msg: InboundMessage, *, key: str, site_id: str, idle_timeout: float,
                              now: float) -> Turn | None:
        """Store a QUEUED question under the open session of `key`, opening one if there is none.

        This process becomes its holder. A new session gets the next generation of `key`
        (core.session_ids.session_id names it) and
        `Turn.opened_session` is True. Returns None, storing nothing, when (platform, event_key) was seen before:
        this is the de-duplication of redelivered events, also between concurrent calls.
        """
        ...

    async def active_turns(self) -> list[Turn]:
        """Every question not ANSWERED or FAILED, oldest first (what a restart resumes)."""
        ...

    async def head_turn(self, session_id: str) -> Turn | None:
        """The oldest unfinished question of a session: the only one that may be in flight."""
        ...

    async def get_turn(self, turn_id: int) -> Turn | None:
        """One question by id, or None if unknown (or pruned)."""
        ...

    async def set_state(self, turn_id: int, state: TurnState) -> None:
        """Move a question to `state` unconditionally (core's state machine decides when)."""

    async def claim_submit(self, turn_id: int) -> bool:
        """QUEUED → SUBMITTING if still QUEUED; True for exactly one caller, who becomes its holder. A repeat
        returns False."""
        ...

    async def mark_submitted(self, turn_id: int, request_id: str, *, now: float) -> None:
        """SUBMITTING → PENDING with Uppzy's request id, kept before anything else happens."""

    async def rebind_session(self, turn_id: int, *, now: float, stamped: bool = False) -> str:
        """Uppzy says the session is closed: close it and move its unsubmitted questions to the key's next
        generation (a new session); returns the new session id. `stamped`: the id also carries `now`
        (core.session_ids.session_id's `stamp`), so it cannot be one Uppzy had before the key's history was pruned."""
        ...

    async def store_answer(self, turn_id: int, answer: str, score: float | None, level: str | None, *,
                           now: float) -> Turn | None:
        """PENDING → DELIVERING with the answer and confidence: kept, so a crash before posting never needs Uppzy
        again, and claimed for posting by this process in the same write (no separate claim_delivery; a crash from
        here on resumes the post as an interrupted one, looking for parts already posted). Returns the question as
        now stored (so it need not be read again). None, changing nothing, when it is not waiting for its answer
        (already stored, finished) or another process holds it now (it adopted it and posts the answer)."""
        ...

    async def begin_failure(self, turn_id: int, kind: str, notice_kind: str, notice: str) -> bool:
        """→ NOTIFYING with the notice to post: a crash before it is posted resumes the notice, never two. False,
        changing nothing, when the question is finished or another process holds it now (it tells the user)."""
        ...

    async def claim_delivery(self, turn_id: int) -> bool:
        """READY or DELIVERING → DELIVERING just before a post, only while this process holds the question: False
        when another process adopted it (it posts) or it is no longer waiting for a post."""
        ...

    async def mark_answered(self, turn_id: int, message_ids: Sequence[str], *, now: float) -> None:
        """→ ANSWERED; remembers which platform messages carry the answer (for feedback) and drops the texts.

        Refreshes the session's last activity. Repeating it with the same ids changes nothing.
        """

    async def mark_failed(self, turn_id: int, kind: str, *, now: float) -> None:
        """→ FAILED (the user has been told); drops the texts."""

    async def postpone(self, turn_id: int, *, until: float) -> None:
        """A READY or DELIVERING question stays DELIVERING (a post may have got through in part), its answer kept,
        to be posted again from `until` (what `undelivered` goes by). Any other state is left as it is."""

    async def undelivered(self, before: float, limit: int) -> list[Turn]:
        """Up to `limit` READY or DELIVERING questions of this process whose answer waits for a (next) post at or
        before `before`, longest waiting first: a fetched answer counts from when it was stored, a postponed one
        from `until`."""
        ...

    async def turn_for_message(self, platform: str, message_id: str, channel_id: str | None = None
                               ) -> Turn | None:
        """The question whose answer is this platform message (in that channel when ids repeat across channels)."""
        ...

    async def knows_thread(self, platform: str, channel_id: str, thread_root: str) -> bool:
        """True when a question was asked in (or started) this thread: follow-ups there need no mention."""
        ...

    async def asked_in_thread(self, platform: str, channel_id: str, thread_root: str, user_id: str) -> bool:
        """True when `user_id` asked a question in this thread or started it with one (kept while the question
        is): their follow-ups there need no mention; other people's do."""
        ...

    async def session_ids(self, platform: str, workspace_id: str, prefix: str) -> set[str]:
        """The ids of the sessions this workspace (platform + workspace id) opened under conversation keys starting
        with `prefix`, while they are kept: exactly which of Uppzy's sessions are this workspace's."""
        ...

    async def claim_feedback(self, turn_id: int, rating: str, user_id: str, source: str, *,
                             now: float) -> FeedbackClaim | None:
        """Reserve the one rating of an answer as `sending`: None for the one caller that got it, else the
        claim already there (which core may take over with `take_over_feedback`)."""
        ...

    async def take_over_feedback(self, turn_id: int, *, seen_at: float, rating: str, user_id: str, source: str,
                                 now: float) -> bool:
        """Replace a `sending` claim whose `at` is still `seen_at` (compare-and-set); True for exactly one caller."""
        ...

    async def finish_feedback(self, turn_id: int, *, sent: bool) -> None:
        """`sent`: the claim becomes final. Not sent: a `sending` claim is removed so the user can try again."""

    async def live_session(self, key: str) -> SessionRow | None:
        """The open session of a conversation key, if any."""
        ...

    async def idle_sessions(self, now: float, limit: int) -> list[SessionRow]:
        """Up to `limit` open sessions whose last activity + idle timeout is before `now`, stalest first."""
        ...

    async def claim_for_close(self, session_id: str, *, idle_at: float | None, now: float | None = None) -> bool:
        """open → closing (claimed at `now`) if still open, idle at `idle_at` (None: regardless) and without an
        unfinished question; True for exactly one caller."""
        ...

    async def closing_sessions(self, limit: int = 500, *, before: float | None = None) -> list[SessionRow]:
        """Sessions whose close was claimed (before `before`, when given) but not confirmed: resumed after a crash
        or a failed call, never while it may still be in flight (in another process)."""
        ...

    async def mark_closed(self, session_id: str, reason: str, *, now: float) -> None:
        """→ closed; the first reason and time recorded stay (repeats change nothing)."""

    async def set_idle_timeout(self, platform: str, workspace_id: str, seconds: float) -> None:
        """Open sessions of a workspace follow its new idle timeout from now on."""

    async def counts(self, platform: str | None = None, workspace_id: str | None = None) -> Counts:
        """Unfinished questions and open sessions, of one workspace or of all."""
        ...

    async def workspace_settings(self, platform: str, workspace_id: str) -> dict[str, str]:
        """The raw overrides stored for a workspace, by setting key (values as the admin's spec stored them)."""
        ...

    async def put_workspace_setting(self, platform: str, workspace_id: str, key: str, value: str | None, *,
                                    by: str | None, now: float) -> None:
        """Store (insert or replace) one override, or with None remove it."""

    async def channel_mode(self, platform: str, workspace_id: str, channel_id: str) -> str | None:
        """The reply mode stored for one channel, if any."""
        ...

    async def put_channel_mode(self, platform: str, workspace_id: str, channel_id: str, mode: str, *,
                               by: str | None, now: float) -> None:
        """Store (insert or replace) one channel's reply mode."""

    # ---- many workspaces: installations, OAuth states, per-workspace credentials (issue 12) ----------------
    # Secrets reach the store only sealed (core.secrets_box.SecretBox): the store never sees a token or key in clear.

    async def save_installation(self, enterprise_id: str | None, team_id: str | None, sealed: str, *,
                                now: float) -> None:
        """Insert or replace the installation of (enterprise, team): `sealed` is the SecretBox-sealed JSON of bolt's
        Installation. An Enterprise Grid org-wide install is saved with team_id None."""

    async def find_installation(self, enterprise_id: str | None, team_id: str | None) -> str | None:
        """The sealed installation of exactly (enterprise, team); when there is none and `enterprise_id` is given,
        that enterprise's org-wide install (saved with team_id None), so any team of the org finds it. None when
        neither exists."""
        ...

    async def delete_installation(self, enterprise_id: str | None, team_id: str | None) -> bool:
        """Remove exactly the (enterprise, team) row (never an org-wide install for a team's lookup); True when there
        was one."""
        ...

    async def refresh_installation(self, enterprise_id: str | None, team_id: str | None,
                                   refresh: Callable[[str], Awaitable[str | None]]) -> str | None:
        """Token rotation: the installation row `find_installation` would return, held so that no other caller, in
        this process or another replica, refreshes it at the same time, while `await refresh(current_sealed)` runs.
        What `refresh` returns (not None) is saved and returned; None returns the current value. Two concurrent
        calls run one after the other: the second sees the first's result. None when there is no such row; an
        exception from `refresh` saves nothing and propagates."""
        ...

    async def issue_oauth_state(self, state: str, *, expires_at: float) -> None:
        """Remember a state handed out with Slack's authorize URL, valid until `expires_at`. Issuing a state that is
        still there changes nothing (its expiry is never extended)."""

    async def consume_oauth_state(self, state: str, *, now: float) -> bool:
        """True exactly once for an issued state that has not expired at `now`; the state is deleted whatever the
        answer (expired or not), and so is every other state expired at `now`. `prune` removes expired ones too."""
        ...

    async def set_credentials(self, platform: str, workspace_id: str, *, site_id: str, sealed_key: str,
                              now: float) -> None:
        """Insert or replace a workspace's own Uppzy site and sealed API key."""

    async def get_credentials(self, platform: str, workspace_id: str) -> tuple[str, str] | None:
        """(site_id, sealed_key) of a workspace connected to its own Uppzy, else None."""
        ...

    async def forget_workspace(self, platform: str, workspace_id: str) -> None:
        """Uninstall: remove that workspace's credentials, its settings and its channel modes at once (conversation
        records stay until the usual pruning). Other processes drop what they cached of its settings."""

    async def workspace_connections(self, *, after: tuple[str, str] | None = None,
                                    limit: int = 500) -> list[tuple[str, str, str, str]]:
        """(platform, workspace_id, site_id, sealed_key) of workspaces connected to their own Uppzy, in
        (platform, workspace_id) order, at most `limit` of them, starting after the key `after` (paging:
        pass the last row's first two fields to get the next page)."""
        ...

    async def reseal_secrets(self, reseal: Callable[[str], str | None], *, batch: int = 200) -> int:
        """Rotation: pass every sealed value of every row (installations, credentials) to `reseal` and store what
        it returns (None: leave the row), `batch` rows at a time in key order (never every row at once), one
        transaction per batch. A row whose value changed since it was read is left as it is now (compare-and-set on
        the old value). Returns how many values were rewritten. An exception from `reseal` stops the walk (batches
        already written stay written)."""
        ...

    async def prune(self, done_before: float) -> int:
        """Forget questions finished before `done_before` (with their answer links and feedback), sessions
        closed before it (a key with none left starts at generation 1 again) and OAuth states expired before it;
        returns how many questions went."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot be read right now (readiness)."""

    async def probe(self) -> None:
        """Readiness: one trivial real write, and (for a file) the check that the database at its path is still
        the one opened; raises StoreUnavailable and sets `health` when either fails, clears it when both pass."""

    async def close(self) -> None:
        """Release connections, the process's hold on the database, and its lease: other processes may adopt its
        unfinished questions at once."""


# ---- a workspace's own Uppzy connection (issue 12): what the admin surfaces of Slack and Discord call ----------


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """The outcome of an admin's "Connect Uppzy": ok, or one line for the admin (never the key) and the form
    field it is about ("site", "api_key", or None for the form as a whole)."""

    ok: bool
    message: str
    field: str | None = None
    site_id: str = ""


class WorkspaceConnector(Protocol):
    """Connects a workspace to its own Uppzy site and API key (checked against Uppzy first, stored sealed)."""

    async def connect(self, platform: str, workspace_id: str, site_id: str, api_key: str) -> ConnectResult:
        """Check the key against the site, then save it; a refusal is a ConnectResult, never an exception."""
        ...

    async def connected_site(self, platform: str, workspace_id: str) -> str | None:
        """The site a workspace is connected to with its own key, else None."""
        ...

    async def forget(self, platform: str, workspace_id: str) -> None:
        """The bot left the workspace: its connection, settings and channel modes go."""
