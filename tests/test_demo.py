"""`uppzy-bot demo` (what `make demo` runs): a person chatting in a terminal with the built-in simulator."""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bots.console.adapter import ConsoleAdapter
from core.models import Answer
from simulator import Simulator
from tests.relay_support import Build

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_", "LOG_"))}
ENV["PYTHONPATH"] = str(ROOT)  # this checkout's code, also when another copy is installed in the venv
INTERNAL_ID = re.compile(r"#?\b[0-9a-f]{8,}-\d+\b")  # the console's message ids: `<run in hex>-<n>`
TRACEBACK = ("Traceback", "Task exception", "Exception in thread", "Exception ignored")


def demo(tmp_path: Path, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the demo on tmp_path/demo.db with `script` as everything typed, then end of input."""
    return subprocess.run(
        [sys.executable, "-m", "bots", "demo", "--db", str(tmp_path / "demo.db"), *args],
        input=script, capture_output=True, text=True, timeout=60, env=ENV, cwd=tmp_path,
    )


def clean(result: subprocess.CompletedProcess[str]) -> None:
    assert not any(marker in result.stderr for marker in TRACEBACK), result.stderr
    assert not INTERNAL_ID.search(result.stdout), result.stdout


def test_demo_answers_rates_lists_and_ends(tmp_path: Path) -> None:
    """Questions get answers with confidence; /good, /sessions and /end work; no traceback, exit 0."""
    first = demo(tmp_path, "how do returns work?\n/sessions\n/help\n/bogus\n/quit\n", "--latency", "0-0.2",
                 "--drain", "10")
    assert first.returncode == 0, first.stderr
    assert "answer to “how do returns work?” (confidence: medium 72/100)" in first.stdout
    assert "Unknown command '/bogus'" in first.stdout
    clean(first)

    second = demo(tmp_path, "what about shipping?\n", "--latency", "0-0.1")
    assert second.returncode == 0 and "2-4 business days" in second.stdout
    clean(second)


def test_demo_quit_at_once_is_quiet(tmp_path: Path) -> None:
    """Ctrl+D or /quit before anything happened (the first reaper pass still running): exit 0, no traceback."""
    for script in ("", "/quit\n", "", "/quit\n"):
        result = demo(tmp_path, script)
        assert result.returncode == 0, result.stderr
        clean(result)


def test_demo_ctrl_c_in_the_first_second_is_quiet(tmp_path: Path) -> None:
    """SIGINT while starting and while waiting for input (stdin still open): exit 130 at once, no traceback."""
    for delay in (0.0, 0.3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bots", "demo", "--db", str(tmp_path / "demo.db")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=tmp_path,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().startswith("Uppzy demo")
            time.sleep(delay)  # 0: during the start-up still in progress; 0.3: while a read blocks
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=10) == 130
            assert not any(marker in proc.stderr.read() for marker in TRACEBACK)  # type: ignore[union-attr]
        finally:
            proc.kill()
            proc.communicate()


def test_demo_sessions_after_a_restart_are_listed(tmp_path: Path) -> None:
    """The sessions of earlier runs are still listed after a restart, with a correct plural."""
    first = demo(tmp_path, "how do returns work?\n", "--latency", "0-0.1")
    assert first.returncode == 0 and "30 days" in first.stdout, first.stderr
    second = demo(tmp_path, "/sessions\n")
    clean(second)
    assert "No sessions yet" not in second.stdout
    assert re.search(r"1\. started \d{4}-\d\d-\d\d \d\d:\d\d, 1 message, open", second.stdout), second.stdout
    third = demo(tmp_path, "and shipping?\n", "--latency", "0-0.1")
    assert third.returncode == 0 and "2-4 business days" in third.stdout, third.stderr
    fourth = demo(tmp_path, "/end\n/sessions\n")
    clean(fourth)
    assert "Conversation closed" in fourth.stdout
    assert re.search(r"1\. started \S+ \S+, 2 messages, closed \d{4}-", fourth.stdout), fourth.stdout


async def test_the_terminal_is_a_direct_conversation(harness: Build, sim: Simulator) -> None:
    """The idle notice says 'send me a message' (nobody mentions a bot in a terminal)."""
    h = await harness()
    await h.ask("how do returns work?")
    await h.until(lambda: h.console.answers())
    assert await h.relay.reaper.reap_once(now=time.time() + 1801) == 1
    [(_, _, notice)] = h.console.notices("idle_closed")
    assert "send me a message" in notice and "mention" not in notice


def _answer(text: str) -> Answer:
    return Answer(text=text, request_id="r1", confidence_score=91, confidence_level="high", low_confidence_note=None,
                  delivery_key="k1")


async def test_answers_are_rendered_for_a_terminal() -> None:
    """On a TTY: Markdown rendered (no `**`), links show their real target, code kept; header names the question."""
    out = io.StringIO()
    console = ConsoleAdapter(out, color=True)
    msg = console.message("how do I *return* something I bought last week at the big store downtown?")
    await console.post_answer(msg.target, _answer(
        "**Returns** take [https://shop.example/returns](https://evil.example/x) or see `RET-1`.\n\n"
        "```python\nprint('label')\n```"))
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\]8;[^\x1b]*\x1b\\", "", out.getvalue())
    assert "**" not in shown and "Returns take" in shown
    assert "https://evil.example/x" in shown  # the real target is visible, not only the text
    assert "print('label')" in shown and "RET-1" in shown and "```" not in shown
    assert "answer to “how do I *return* something I bought la…” (confidence: high 91/100)" in " ".join(shown.split())
    assert not INTERNAL_ID.search(shown)


async def test_plain_output_when_not_a_terminal() -> None:
    """Piped: no escape codes, the answer text as Uppzy wrote it, each block on lines of its own."""
    out = io.StringIO()
    console = ConsoleAdapter(out, color=False)
    msg = console.message("hi")
    await console.show_working(msg.target)
    await console.post_answer(msg.target, _answer("**Hello** there"))
    assert "\x1b" not in out.getvalue()
    assert out.getvalue().splitlines()[:3] == ["  … thinking", "uppzy ▸ answer to “hi” (confidence: high 91/100)",
                                               "**Hello** there"]


def test_in_a_terminal_output_never_lands_on_the_line_being_typed(tmp_path: Path) -> None:
    """Through a pseudo-terminal: an answer arriving while the user types goes above the prompt, which comes back
    with the typed text; Ctrl+C at the prompt exits 130 on a fresh line and leaves the terminal's modes as they were."""
    pty = pytest.importorskip("pty")
    termios = pytest.importorskip("termios")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the demo on the pseudo-terminal
        os.chdir(tmp_path)
        os.execve(sys.executable, [sys.executable, "-m", "bots", "demo", "--db", str(tmp_path / "demo.db"),
                                   "--latency", "0.5-0.5"], ENV)
    seen = b""

    def until(needle: bytes, timeout: float = 10.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while needle not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            if select.select([fd], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    seen += os.read(fd, 65536)

    try:
        modes = termios.tcgetattr(fd)
        until("you ▸ ".encode())
        os.write(fd, b"how do returns work?\r")
        until(b"thinking")
        os.write(fd, b"and ship")  # typed ahead, not sent
        until(b"rate it with")
        until("you ▸ and ship".encode(), timeout=2)  # the prompt is back with the typed-ahead text
        erased = seen.replace(b"\r\x1b[2K", b"\n")  # a line the demo erased (a prompt lifted above the output)
        shown = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", erased).decode()
        assert "and shipuppzy" not in shown and re.search(r"\nuppzy ▸ answer to “how do returns work\?”", shown)
        assert "**" not in shown and not INTERNAL_ID.search(shown)
        os.kill(pid, signal.SIGINT)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
        with contextlib.suppress(OSError):
            seen += os.read(fd, 65536)
        assert not any(marker.encode() in seen for marker in TRACEBACK), seen
        assert termios.tcgetattr(fd)[3] == modes[3]  # echo and line editing as they were
    finally:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
