"""The terminal itself: one writer for all the demo shows (Markdown on a TTY, plain text in a pipe) and its input."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from typing import Any, TextIO

__all__ = ["LineReader", "Screen"]

_CLEAR_LINE = "\r\x1b[2K"


class Screen:
    """Prints blocks on their own lines. On a TTY they go above the input prompt, which is drawn again with
    whatever the user has typed so far, so output and typed-ahead text never share a line."""

    def __init__(self, out: TextIO | None = None, *, tty: bool | None = None, prompt: str = "you ▸ ") -> None:
        self.out = out or sys.stdout
        self.tty = _isatty(self.out) if tty is None else tty
        self.prompt = prompt
        self.prompting = False  # set by the reader: the prompt (and maybe typed text) is the last line
        self._rich: Any = None
        if self.tty:
            from rich.console import Console

            self._rich = Console(file=self.out, force_terminal=True, highlight=False, emoji=False)

    def show(self, text: str, *, style: str = "", markdown: bool = False) -> None:
        """One block of output, on lines of its own; `markdown` renders it (links show their real target)."""
        self.show_parts([(text, style, markdown)])

    def show_parts(self, parts: list[tuple[str, str, bool]]) -> None:
        """Several (text, style, markdown) pieces as one block: the prompt is lifted and drawn again once."""
        if self._rich is None:
            self.out.write("".join(text + "\n" for text, _, _ in parts))
            self.out.flush()
            return
        from rich.console import Group
        from rich.markdown import Markdown
        from rich.text import Text

        self._lift_prompt()
        self._rich.print(Group(*(Markdown(text, hyperlinks=False) if markdown else Text(text, style=style)
                                 for text, style, markdown in parts)))
        self._redraw_prompt()

    def _lift_prompt(self) -> None:
        if self.prompting:
            self.out.write(_CLEAR_LINE)

    def _redraw_prompt(self) -> None:
        if self.prompting:
            self.out.write(self.prompt + _typed_so_far())
        self.out.flush()

    def leave(self) -> None:
        """Finish on a fresh line (after Ctrl+C at the prompt the shell's prompt would follow ours)."""
        if self.tty and self.prompting:
            self.out.write("\n")
            self.prompting = False
        with contextlib.suppress(ValueError, OSError):
            self.out.flush()


class LineReader:
    """Reads stdin in a daemon thread, so a blocked read never delays leaving; lines arrive on an asyncio queue,
    None at the end of input. On a TTY it reads with line editing behind the screen's prompt."""

    def __init__(self, screen: Screen, stdin: TextIO | None = None) -> None:
        self.screen = screen
        self.stdin = stdin or sys.stdin
        self.interactive = screen.tty and _isatty(self.stdin)
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._saved_tty: Any = None
        self._wanted = threading.Event()  # interactive: prompt again only once the last line was acted on

    def start(self) -> None:
        """Start reading (remembering the terminal's modes, which `stop` puts back)."""
        if self.interactive:
            with contextlib.suppress(ImportError):
                import readline  # noqa: F401  (input() then offers line editing and history)
            with contextlib.suppress(ImportError, OSError, ValueError):
                import termios

                self._saved_tty = termios.tcgetattr(self.stdin.fileno())
        threading.Thread(target=self._run, name="demo-input", daemon=True).start()

    async def line(self) -> str | None:
        """The next line typed (without its newline), or None when input ended."""
        self._wanted.set()  # a command's reply is printed before the next prompt, never after it
        return await self._queue.get()

    def stop(self) -> None:
        """Leave the terminal as we found it, even if a line read is still in progress."""
        self.screen.leave()
        if self._saved_tty is not None:
            with contextlib.suppress(ImportError, OSError, ValueError):
                import termios

                termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved_tty)

    def _read(self) -> str | None:
        if not self.interactive:
            line = self.stdin.readline()
            return line.rstrip("\r\n") if line else None
        self.screen.prompting = True
        try:
            return input(self.screen.prompt)
        finally:
            self.screen.prompting = False

    def _run(self) -> None:
        while True:
            if self.interactive:
                self._wanted.wait()
                self._wanted.clear()
            try:
                line = self._read()
            except UnicodeDecodeError:
                line = ""  # a line that is not text: skipped like an empty one
            except (EOFError, KeyboardInterrupt, OSError, ValueError):
                line = None
            try:
                self._loop.call_soon_threadsafe(self._queue.put_nowait, line)
            except RuntimeError:  # the demo has already ended
                return
            if line is None:
                return


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def _typed_so_far() -> str:
    """What the user has typed at the prompt and not yet sent (readline keeps it), or ''."""
    module = sys.modules.get("readline")
    if module is None:
        return ""
    try:
        return str(module.get_line_buffer())
    except Exception:
        return ""
