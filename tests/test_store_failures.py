"""Item 1 and 14 (store): a database that cannot be written is refused at start in one line, a question that
cannot be recorded gets one apology, /readyz follows the store's health, and a deleted database file is noticed.

Disk full and read-only are real: the database sits on a small tmpfs mounted over the test's directory, filled up
or remounted read-only (root only; skipped with the reason otherwise).
"""

# The Slack fixtures are imported, not loaded with pytest_plugins (see tests/test_faults_store.py).
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import pytest

from bots.runner import run_bot
from core import messages
from core.config import ConfigError, Secret, Settings
from core.health import StoreUnavailable
from core.models import InboundMessage, ReplyTarget
from core.sqlite_store import SqliteStore
from simulator import Simulator
from tests.fakes.slack_fake import FakeSlack
from tests.fault_support import wait_until
from tests.relay_support import Build
from tests.slack_support import fake, make_rig  # noqa: F401

if TYPE_CHECKING:
    from tests.slack_support import RigFactory


class Disk:
    """A small tmpfs mounted over a directory: fill it, free it, make it read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._filler = path / "filler"

    def fill(self) -> None:
        """Write until the file system says ENOSPC."""
        fd = os.open(self._filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        finally:
            os.close(fd)

    def free(self) -> None:
        """Give the space back."""
        if self._filler.exists():
            self._filler.unlink()

    def remount(self, mode: str) -> None:
        """`ro` or `rw` (ro only works while no file on it is open for writing)."""
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True, capture_output=True)

    def bind_read_only(self, source: Path, target: Path) -> None:
        """Put a read-only view of `source` over the file `target` (a read-only file root cannot write)."""
        subprocess.run(["mount", "--bind", str(source), str(target)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True)

    def unmount(self, target: Path) -> None:
        """Undo bind_read_only."""
        subprocess.run(["umount", str(target)], check=False)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    """A 4 MB tmpfs over tmp_path (requested before the rig, so it is unmounted after the rig closed its store)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs for the disk-full and read-only cases")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(tmp_path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    small = Disk(tmp_path)
    try:
        yield small
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(tmp_path)], capture_output=True, check=False)
        small.free()
        subprocess.run(["umount", "-l", str(tmp_path)], capture_output=True, check=False)


# ---- at start: one line naming DATABASE_URL ----------------------------------------------------------------------


@pytest.mark.parametrize("case", ["read-only mount", "read-only mount, new file", "directory not creatable",
                                  "disk full, new file", "read-only file (bind mount)"])
async def test_an_unwritable_database_is_refused_at_open(disk: Disk, case: str) -> None:
    """Each way the file cannot be written is a ConfigError naming DATABASE_URL, never a store that drops
    every question (today a read-only file opened fine)."""
    existing = disk.path / "bot.db"
    store = await SqliteStore.open(str(existing))
    await store.close()
    target = existing
    bound: Path | None = None
    if case.startswith("read-only mount"):
        disk.remount("ro")
        target = existing if case == "read-only mount" else disk.path / "new.db"
    elif case == "directory not creatable":
        disk.remount("ro")
        target = disk.path / "sub" / "bot.db"
    elif case == "disk full, new file":
        disk.fill()
        target = disk.path / "new.db"
    else:
        source = disk.path / "ro-source.db"
        source.write_bytes(existing.read_bytes())
        disk.bind_read_only(source, existing)
        bound = existing
    try:
        with pytest.raises(ConfigError) as raised:
            await SqliteStore.open(str(target))
    finally:
        if bound is not None:
            disk.unmount(bound)
    assert raised.value.variable == "DATABASE_URL"
    assert str(raised.value).startswith(f"DATABASE_URL: {target} cannot be written (")
    assert "\n" not in str(raised.value)


def test_run_with_a_read_only_database_exits_with_one_line(disk: Disk) -> None:
    """`uppzy-bot run` on a read-only mount: exit 2, one line on stderr naming DATABASE_URL, no traceback."""
    disk.remount("ro")
    env = {**os.environ, "UPPZY_API_KEY": "sk-test-1234567890", "UPPZY_SITE_ID": "demo-site",
           "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_APP_TOKEN": "xapp-test", "PORT": str(_free_port()),
           "DATABASE_URL": f"sqlite:///{disk.path / 'bot.db'}", "UPPZY_BASE_URL": "http://127.0.0.1:9",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}  # this checkout, whatever is installed
    result = subprocess.run([sys.executable, "-m", "bots", "run"], cwd=disk.path.parent, env=env,
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "DATABASE_URL" in line]
    assert lines == [f"uppzy-bot: configuration error: DATABASE_URL: {disk.path / 'bot.db'} cannot be written "
                     "(Read-only file system); the bot needs a writable database file and directory with free space"]


# ---- while running: the asker is told once, readiness follows --------------------------------------------------


async def test_a_question_on_a_full_disk_gets_one_apology_and_the_next_one_an_answer(
    disk: Disk, make_rig: RigFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Slack Socket Mode (acked, never redelivered): with the disk full each asker gets the one 'send it again'
    line, a redelivery of the same event gets nothing more, and the ERROR log is not one line per message; once
    space is back the next question is answered and the store is healthy again."""
    rig = await make_rig()
    store = rig.relay.store
    disk.fill()
    events = [await rig.mention(f"question {i}", user=f"U{i}") for i in range(4)]
    await rig.fake.wait_until(lambda: all(rig.posts_in(e["ts"]) for e in events), what="a line in every thread")
    await rig.fake.send_event(events[0])  # Slack's own retry of the first event
    await rig.drain()
    for event in events:
        assert [m["text"] for m in rig.posts_in(event["ts"])] == [messages.NOT_RECORDED]
    assert rig.sim.calls("chat_async") == []
    assert not store.health.ok and "full" in (store.health.reason or "")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert 1 <= len(errors) <= 3 and not any(r.exc_info for r in errors), [r.getMessage() for r in errors]

    disk.free()
    later = await rig.mention("how do returns work?", user="U9")
    answers = await rig.wait_answer(later["ts"])
    assert "30 days" in answers[0]["text"]
    assert store.health.ok


async def test_a_deleted_database_file_is_noticed_and_logged_at_error(
    harness: Build, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """os.remove(database) while running: the probe fails (even though writes to the deleted file still work),
    health says why, and the ERROR line comes once however often readiness asks."""
    h = await harness(db="gone.db")
    await h.store.probe()
    os.remove(tmp_path / "gone.db")
    for _ in range(5):
        with pytest.raises(StoreUnavailable, match="was deleted"):
            await h.store.probe()
    assert not h.store.health.ok
    assert "gone.db was deleted while the bot was running" in (h.store.health.reason or "")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "restore it and restart the bot" in errors[0]


async def test_a_replaced_database_file_is_noticed(harness: Build, tmp_path: Path) -> None:
    """Another file moved into the path (a restore while running) is not the database this process has open."""
    h = await harness(db="moved.db")
    os.replace(tmp_path / "moved.db", tmp_path / "old.db")
    (tmp_path / "moved.db").write_bytes(b"")
    with pytest.raises(StoreUnavailable, match="was replaced"):
        await h.store.probe()


# ---- /readyz through `run` ---------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _ready(port: int) -> tuple[int, dict[str, bool]]:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/readyz") as res:
        return res.status, json.loads(await res.text())["checks"]


async def test_readyz_fails_while_the_disk_is_full_or_the_file_is_gone_and_recovers(
    disk: Disk, sim: Simulator
) -> None:
    """`run`: /readyz 200, 503 with the disk full, 200 again by itself once space is back, 503 once the
    database file is deleted."""
    port = _free_port()
    async with FakeSlack() as slack:
        settings = Settings(
            uppzy_api_key=Secret("sim-key"), uppzy_site_id="demo-site", uppzy_base_url=sim.base_url,
            slack_bot_token=Secret(slack.bot_token), slack_app_token=Secret(slack.app_token),
            slack_api_base_url=slack.api_url, database_url=f"sqlite:///{disk.path / 'bot.db'}", port=port,
        )
        stop, started = asyncio.Event(), asyncio.Event()
        runner = asyncio.create_task(run_bot(settings, stop=stop, started=started, host="127.0.0.1"))
        try:
            await asyncio.wait_for(started.wait(), 15)
            assert await _ready(port) == (200, {"store": True, "slack": True})

            async def shows(expected: tuple[int, dict[str, bool]]) -> bool:
                return await _ready(port) == expected  # the write probe runs at most every 2 s

            disk.fill()
            await wait_until(lambda: shows((503, {"store": False, "slack": True})), interval=0.05, timeout=5,
                             what="/readyz 503 with the disk full")
            disk.free()
            await wait_until(lambda: shows((200, {"store": True, "slack": True})), interval=0.05, timeout=5,
                             what="/readyz back to 200")
            os.remove(disk.path / "bot.db")
            await wait_until(lambda: shows((503, {"store": False, "slack": True})), interval=0.05, timeout=5,
                             what="/readyz 503 once the file is gone")
        finally:
            disk.free()
            stop.set()
            assert await asyncio.wait_for(runner, 10) == 0


# ---- later in the pipeline: a failed write does not lose the question --------------------------------------------


async def test_failed_claim_and_failed_request_id_write_still_end_in_one_answer(harness: Build, sim: Simulator) -> None:
    """Injected at the store boundary: claim_submit fails once (the question stays queued and is tried again) and
    mark_submitted fails twice after Uppzy took the question (its request id is kept until the write works):
    the asker gets exactly one answer and Uppzy is asked exactly once."""
    h = await harness()
    real_claim, real_mark = h.store.claim_submit, h.store.mark_submitted
    failures = {"claim": 1, "mark": 2}

    async def claim(turn_id: int) -> bool:
        if failures["claim"]:
            failures["claim"] -= 1
            raise StoreUnavailable("the database cannot be written: database or disk is full")
        return await real_claim(turn_id)

    async def mark(turn_id: int, request_id: str, *, now: float) -> None:
        if failures["mark"]:
            failures["mark"] -= 1
            raise StoreUnavailable("the database cannot be written: database or disk is full")
        await real_mark(turn_id, request_id, now=now)

    h.store.claim_submit, h.store.mark_submitted = claim, mark  # type: ignore[method-assign]
    _, qid = await h.ask("how do returns work?")
    await h.until(lambda: h.console.transcript)
    await h.relay.wait_idle()
    assert [(kind, q) for kind, q, _ in h.console.transcript] == [("answer", qid)]
    assert len(sim.calls("chat_async")) == 1 and failures == {"claim": 0, "mark": 0}


def fail_first(store: object, method: str, times: int) -> list[int]:
    """Make `store.<method>` raise StoreUnavailable (a full disk) on its first `times` calls; returns [left]."""
    real, left = getattr(store, method), [times]

    async def failing(*args: object, **kwargs: object) -> object:
        if left[0]:
            left[0] -= 1
            raise StoreUnavailable("the database cannot be written: database or disk is full")
        return await real(*args, **kwargs)

    setattr(store, method, failing)
    return left


async def test_failed_answer_writes_still_answer_once_and_the_session_moves_on(harness: Build, sim: Simulator) -> None:
    """Injected at the store boundary: storing the fetched answer fails, and so does marking it answered twice.
    The answer is posted from memory anyway, exactly once; the record lands once the store works again, and the
    same conversation's next question is then answered too."""
    h = await harness()
    store_left, mark_left = fail_first(h.store, "store_answer", 1), fail_first(h.store, "mark_answered", 2)
    _, first = await h.ask("how do returns work?")
    _, second = await h.ask("and shipping?")
    await h.until(lambda: len(h.console.transcript) == 2, timeout=8)
    await h.relay.wait_idle()
    assert [(kind, q) for kind, q, _ in h.console.transcript] == [("answer", first), ("answer", second)]
    assert store_left == mark_left == [0] and len(sim.calls("chat_async")) == 2


async def test_failed_failure_writes_still_tell_the_user_once(harness: Build, sim: Simulator) -> None:
    """Injected: recording the failure notice and marking the question failed both fail; the user is still told
    once (Uppzy could not answer) and the record lands later."""
    sim.script("broken", "", fail=True)
    h = await harness()
    begin_left, failed_left = fail_first(h.store, "begin_failure", 1), fail_first(h.store, "mark_failed", 1)
    _, qid = await h.ask("broken question")
    await h.until(lambda: h.console.notices(), timeout=5)
    await h.relay.wait_idle()
    assert [(kind, q) for kind, q, _ in h.console.transcript] == [("failed", qid)]
    assert begin_left == failed_left == [0]


async def test_a_late_failure_record_never_reopens_the_question(harness: Build, sim: Simulator) -> None:
    """Recording the failure notice fails twice (its background retry lands after the question was marked failed):
    the question stays failed, and the conversation's next question is answered at once."""
    sim.script("broken", "", fail=True)
    h = await harness()
    begin_left = fail_first(h.store, "begin_failure", 2)
    _, broken = await h.ask("broken question")
    _, fine = await h.ask("how do returns work?")
    await h.until(lambda: len(h.console.transcript) == 2, timeout=8)
    await h.until(lambda: begin_left == [0], timeout=5)
    await h.relay.wait_idle()
    assert [(kind, q) for kind, q, _ in h.console.transcript] == [("failed", broken), ("answer", fine)]
    assert await h.store.active_turns() == []


async def test_an_unstored_answer_the_platform_refuses_is_delivered_later_not_replaced(
        harness: Build, sim: Simulator) -> None:
    """Storing the answer fails once and the platform refuses every attempt of the delivery backoff: once the answer
    is stored it is delivered from there, the real text, once (never the fallback text)."""
    sim.script("returns", "Within 30 days.")
    h = await harness()
    fail_first(h.store, "store_answer", 1)
    real_post, refusals = h.console.post_answer, [3]  # FAST tuning: 3 delivery attempts

    async def refusing(*args: object, **kwargs: object) -> list[str]:
        if refusals[0]:
            refusals[0] -= 1
            raise OSError("platform down")
        return await real_post(*args, **kwargs)  # type: ignore[arg-type]

    h.console.post_answer = refusing  # type: ignore[method-assign]
    _, qid = await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers(), timeout=8)
    await h.relay.wait_idle()
    assert h.console.answers() == [(qid, "Within 30 days.")] and h.console.notices() == []


async def test_a_posted_answer_awaiting_its_record_is_not_swept_again(harness: Build, sim: Simulator) -> None:
    """The answer is posted but marking it answered fails: a sweep meanwhile does not post it a second time."""
    h = await harness()
    mark_left = fail_first(h.store, "mark_answered", 1)
    _, qid = await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers(), timeout=5)
    assert mark_left == [0]
    assert await h.relay.parts.delivery.sweep() == 0  # it is READY in the store, but already posted
    await h.relay.wait_idle()
    assert [q for q, _ in h.console.answers()] == [qid] and await h.store.active_turns() == []


async def test_a_group_commit_on_a_full_disk_fails_each_caller_with_store_unavailable(disk: Disk) -> None:
    """Twenty questions at once on a full disk (recorded in one or two group commits): every caller gets its own
    StoreUnavailable, health fails, no transaction is left open; once space is back the next question is recorded
    and health is ok again."""
    store = await SqliteStore.open(str(disk.path / "bot.db"))
    try:
        disk.fill()
        big = "x" * 200_000  # more than the few bytes left: the write itself must fail
        results = await asyncio.gather(*(
            store.record_question(_message(f"{i}.0", big), key=f"k{i}", site_id="s", idle_timeout=60, now=1.0)
            for i in range(20)), return_exceptions=True)
        assert all(isinstance(r, StoreUnavailable) for r in results), results
        assert len({id(r) for r in results}) == 20  # not one shared exception object
        assert not store.health.ok and 1 <= store.health.failures <= 2
        assert await store._db.run(lambda c: c.in_transaction) is False
        disk.free()
        turn = await store.record_question(_message("late", "hello"), key="k", site_id="s", idle_timeout=60, now=2.0)
        assert turn is not None and store.health.ok
    finally:
        await store.close()


def _message(event: str, text: str) -> InboundMessage:
    return InboundMessage(target=ReplyTarget("slack", "T1", "C1", "C1", event, "U1"), text=text, event_key=event)
