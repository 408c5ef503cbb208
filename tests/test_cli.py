"""The `uppzy-bot` command as a user runs it: a real subprocess of `python -m bots` with a clean environment."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.config import Secret
from core.errors import UppzyError
from core.retry import RetryPolicy
from core.uppzy import UppzyClient

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bot(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    """Run `python -m bots ARGS` to completion in `cwd` with the (already cleaned) environment plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "bots", *args], cwd=cwd, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def test_help_lists_every_subcommand(tmp_path: Path) -> None:
    """--help exits 0 and lists the run, demo, check and simulate subcommands."""
    result = bot("--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: uppzy-bot")
    for command in ("run", "demo", "check", "simulate"):
        assert command in result.stdout


def test_missing_subcommand_is_a_usage_error(tmp_path: Path) -> None:
    """No subcommand exits 2 with argparse's usage message."""
    result = bot(cwd=tmp_path)
    assert result.returncode == 2 and "usage:" in result.stderr


@pytest.mark.parametrize("command", ["check", "run", "demo"])
def test_malformed_setting_exits_2_with_one_line(tmp_path: Path, command: str) -> None:
    """A malformed PORT stops every settings-reading command with exit 2 and one stderr line naming PORT."""
    result = bot(command, cwd=tmp_path, env={"PORT": "abc", "UPPZY_API_KEY": "sk-live-SECRET-1234567890"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PORT" in lines[0] and "abc" in lines[0]
    assert "Traceback" not in result.stderr
    assert "sk-live-SECRET" not in result.stderr + result.stdout


def test_dotenv_in_working_directory_is_read(tmp_path: Path) -> None:
    """A .env in the working directory is loaded, so its malformed value is reported the same way."""
    (tmp_path / ".env").write_text("SESSION_IDLE_TIMEOUT=soon\n")
    result = bot("check", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SESSION_IDLE_TIMEOUT" in result.stderr and "Traceback" not in result.stderr


def test_bad_simulate_option_is_a_usage_error(tmp_path: Path) -> None:
    """An unreadable --latency range is rejected by argparse with exit 2."""
    result = bot("simulate", "--latency", "fast", cwd=tmp_path)
    assert result.returncode == 2 and "--latency" in result.stderr


async def wait_for_banner(process: asyncio.subprocess.Process, timeout: float = 10.0) -> str:
    """Read stdout up to 'Press Ctrl+C to stop.', which `simulate` prints (flushed) once it is listening;
    return what was read. Fails with its stderr if the process ends first."""
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Press Ctrl+C to stop."):
        try:
            line = (await asyncio.wait_for(process.stdout.readline(), timeout)).decode()
        except TimeoutError:
            pytest.fail(f"simulate printed no banner within {timeout}s; stdout so far: {lines}")
        if not line:  # stdout closed: the process is gone
            _, stderr = await process.communicate()
            pytest.fail(f"simulate exited early with {process.returncode}: {stderr.decode()}")
        lines.append(line)
    return "".join(lines)


async def test_simulate_serves_async_chat_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`simulate --port P` serves an async chat and its status over HTTP, then exits 0 on SIGTERM."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "simulate", "--port", str(port), "--latency", "0-0", "--seed", "1",
        cwd=tmp_path, env=dict(os.environ), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        banner = await wait_for_banner(process)
        async with UppzyClient(base_url=f"http://127.0.0.1:{port}/api/v1", api_key=Secret("sim-key"),
                               site_id="demo-site", retry=RetryPolicy.no_wait()) as client:
            submission = await client.submit("cli-session", "how do returns work?")
            status = await client.status(submission.request_id)
        assert submission.status == "pending"
        assert status.status == "completed" and status.answer
        process.send_signal(signal.SIGTERM)  # the answers above prove its signal handlers are installed
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=10)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert f"Uppzy simulator on http://127.0.0.1:{port}/api/v1" in banner
    assert "Traceback" not in stderr.decode()


async def test_simulate_serves_extra_keys_each_on_its_own_sites(tmp_path: Path) -> None:
    """`simulate --key team-b-key=site-b` also accepts that key, on site-b only (another site: 404 site not found);
    a malformed --key is one usage line."""
    bad = bot("simulate", "--key", "no-equals-sign", cwd=tmp_path)
    assert bad.returncode == 2 and "KEY=SITE" in bad.stderr and "Traceback" not in bad.stderr
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "simulate", "--port", str(port), "--latency", "0-0", "--key",
        "team-b-key=site-b", cwd=tmp_path, env=dict(os.environ), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_banner(process)
        base = f"http://127.0.0.1:{port}/api/v1"
        async with UppzyClient(base_url=base, api_key=Secret("team-b-key"), site_id="site-b",
                               retry=RetryPolicy.no_wait()) as client:
            assert (await client.submit("cli-b", "how do returns work?")).status == "pending"
            with pytest.raises(UppzyError):
                await client.submit("cli-b", "and here?", site_id="demo-site")
    finally:
        process.kill()
        await process.communicate()


def test_simulate_reports_a_busy_port(tmp_path: Path) -> None:
    """`simulate` on a port already in use exits 1 with one line saying it cannot listen."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = bot("simulate", "--port", str(port), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot listen" in result.stderr and "Traceback" not in result.stderr


def _run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """A `run` environment with Uppzy set (nothing is reached before the failures these tests provoke)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPPZY_", "SLACK_", "DISCORD_"))}
    env["PYTHONPATH"] = str(ROOT)  # this checkout's code, whatever copy the venv has installed
    env.update(UPPZY_API_KEY="sk-live-SECRET-1234567890", UPPZY_SITE_ID="demo-site",
               UPPZY_BASE_URL="http://127.0.0.1:9/api/v1", DATABASE_URL=f"sqlite:///{tmp_path / 'bot.db'}",
               LOG_LEVEL="CRITICAL", PORT=str(free_port()))
    env.update(extra)
    return env


def test_run_without_a_signing_secret_stops_before_the_database_is_opened(tmp_path: Path) -> None:
    """Slack HTTP mode without SLACK_SIGNING_SECRET: exit 2, one line naming it, and no database file created."""
    result = subprocess.run([sys.executable, "-m", "bots", "run"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=20, check=False, env=_run_env(tmp_path, SLACK_BOT_TOKEN="xoxb-1-SECRET"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SLACK_SIGNING_SECRET" in result.stderr and "SECRET" not in result.stderr.replace("SIGNING_SECRET", "")
    assert not (tmp_path / "bot.db").exists()


def test_run_with_discord_shard_ids_but_no_count_stops_before_the_database_is_opened(tmp_path: Path) -> None:
    """DISCORD_SHARD_IDS without DISCORD_SHARD_COUNT: exit 2 with one line naming both, nothing opened."""
    result = subprocess.run([sys.executable, "-m", "bots", "run"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=20, check=False, env=_run_env(tmp_path, DISCORD_BOT_TOKEN="discord-SECRET-token",
                                                                   DISCORD_SHARD_IDS="0,1"))
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "DISCORD_SHARD_IDS: needs DISCORD_SHARD_COUNT" in result.stderr
    assert "SECRET" not in result.stderr and not (tmp_path / "bot.db").exists()


def test_run_on_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """PORT already in use: exit 2 (an operator's choice to fix, systemd does not loop on it) with one stderr line
    naming PORT, not a traceback."""
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = _run_env(tmp_path, PORT=str(port), DISCORD_BOT_TOKEN="discord-SECRET-token",
                       DISCORD_API_BASE_URL="http://127.0.0.1:9/api/v10")
        result = subprocess.run([sys.executable, "-m", "bots", "run"], cwd=tmp_path, capture_output=True,
                                text=True, timeout=20, check=False, env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "PORT" in lines[0] and str(port) in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "SECRET" not in result.stderr


def test_run_refuses_a_key_with_a_zero_width_character(tmp_path: Path) -> None:
    """UPPZY_API_KEY ending in U+200B (pasted from a web page): exit 2, one line naming the variable, not the key."""
    env = _run_env(tmp_path, UPPZY_API_KEY="sk-live-SECRET-1234567890\u200b", DISCORD_BOT_TOKEN="discord-token")
    result = subprocess.run([sys.executable, "-m", "bots", "run"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=20, check=False, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "UPPZY_API_KEY" in result.stderr and "U+200B" in result.stderr and "SECRET" not in result.stderr
    assert not (tmp_path / "bot.db").exists()
