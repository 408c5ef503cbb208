"""The demo's simulated Uppzy site keeps its sessions next to the demo database, so a restart forgets nothing.

A real Uppzy keeps every session whatever happens to the bot; the in-process simulator starts empty. Without this,
`/sessions` after a restart said "No sessions yet." although the demo database had them (and their ids continue).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

__all__ = ["SimulatorState"]

log = logging.getLogger(__name__)


class SimulatorState:
    """`<demo db>.simulator.json`: the simulated sessions (id, times, message count), read at start, written at exit."""

    def __init__(self, db_path: str) -> None:
        self.path = Path(f"{db_path}.simulator.json")

    def restore(self, sim: Any) -> int:
        """Put the saved sessions back into a simulator that has not started; returns how many."""
        from simulator.server import _Session

        try:
            rows = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            log.warning("demo: ignoring unreadable %s (%s)", self.path, type(exc).__name__)
            return 0
        names = {f.name for f in fields(_Session)}
        restored = 0
        for row in rows if isinstance(rows, list) else []:
            if isinstance(row, dict) and {"id", "site"} <= row.keys() <= names:
                with contextlib.suppress(TypeError):
                    sim.sessions[(row["site"], row["id"])] = _Session(**row)
                    restored += 1
        return restored

    def save(self, sim: Any) -> None:
        """Write the simulator's sessions (atomically: a crash mid-write keeps the previous file)."""
        rows = [asdict(session) for session in sim.sessions.values()]
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(rows, indent=1), encoding="utf-8")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("demo: cannot save %s (%s)", self.path, exc.strerror)
