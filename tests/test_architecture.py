"""Layering rules checked on the source itself (ast scans), so they hold for modules added later too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_LIBRARIES = {"slack_bolt", "slack_sdk", "discord"}
ENV_READERS_ALLOWED = {"bots/cli.py"}


def modules(*packages: str) -> list[Path]:
    """Every .py file under the given top-level packages."""
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py"))


def imported_roots(tree: ast.AST) -> set[str]:
    """Top-level names of every module the tree imports (absolute imports only)."""
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def environment_reads(tree: ast.AST) -> list[int]:
    """Line numbers where the tree touches os.environ / os.getenv (or imports them from os)."""
    lines: list[int] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os"
            and node.attr in {"environ", "getenv", "environb", "getenvb", "putenv", "unsetenv"}
        ):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "os" and any(
            alias.name in {"environ", "getenv", "environb", "getenvb"} for alias in node.names
        ):
            lines.append(node.lineno)
    return lines


def test_scans_find_the_modules() -> None:
    """The scans below see the real packages (a wrong root would make them pass vacuously)."""
    names = {path.relative_to(ROOT).as_posix() for path in modules("core", "bots", "simulator")}
    assert {"core/uppzy.py", "core/config.py", "simulator/server.py", "bots/cli.py"} <= names


@pytest.mark.parametrize("path", modules("core", "simulator"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_core_and_simulator_never_import_platform_libraries(path: Path) -> None:
    """Nothing under core/ or simulator/ imports slack_bolt, slack_sdk or discord."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert not imported_roots(tree) & PLATFORM_LIBRARIES


@pytest.mark.parametrize(
    "path", modules("core", "bots", "simulator"), ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_only_the_entry_point_reads_the_environment(path: Path) -> None:
    """No module in core/, bots/ or simulator/ reads os.environ or os.getenv, except bots/cli.py."""
    if path.relative_to(ROOT).as_posix() in ENV_READERS_ALLOWED:
        return
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert environment_reads(tree) == [], f"{path.relative_to(ROOT)} reads the environment"


def test_environment_scan_catches_each_form() -> None:
    """The scan flags os.environ[...], os.environ.get, os.getenv and `from os import environ`."""
    samples = ["import os\nos.environ['X']", "import os\nos.environ.get('X')", "import os\nos.getenv('X')",
               "from os import environ"]
    for sample in samples:
        assert environment_reads(ast.parse(sample)), sample
    assert environment_reads(ast.parse("import os\nos.path.join('a', 'b')")) == []


ADAPTER_PACKAGES = ("bots/slack", "bots/discord", "bots/console")
CORE_FOR_ADAPTERS = {"core.ports", "core.models", "core.config", "core.text", "core.supervisor"}
COMPONENTS = {"Relay", "Components", "Intake", "Router", "Submitter", "Delivery", "Feedback", "Conversations",
              "Platforms", "PollScheduler", "IdleReaper", "WorkspaceSettingsService", "TaskSupervisor", "SqliteStore",
              "PostgresStore", "Membership", "UppzyClient"}
COMPOSITION_ROOT = "bots/runner.py"
# Supervisors of an adapter's own event handlers are built where those handlers live.
OWN_SUPERVISORS = {"bots/slack/events.py", "bots/slack/assistant.py", "bots/discord/events.py", "core/poller.py"}


def core_imports(tree: ast.AST) -> set[str]:
    """Every core module a tree imports from (`from core import x` counts as core.x)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "core":
                found.update(f"core.{alias.name}" for alias in node.names)
            elif node.module.startswith("core."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("core"))
    return found


def constructed(tree: ast.AST) -> set[str]:
    """Names called like constructors (`Name(...)`, `Name.open(...)`) in a tree."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "open" and isinstance(func.value, ast.Name):
                names.add(func.value.id)
            elif isinstance(func, ast.Name):
                names.add(func.id)
    return names


@pytest.mark.parametrize("path", modules(*ADAPTER_PACKAGES), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_adapters_reach_core_only_through_its_ports(path: Path) -> None:
    """Slack, Discord and console code imports core only from its ports and neutral value modules."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert core_imports(tree) <= CORE_FOR_ADAPTERS, core_imports(tree) - CORE_FOR_ADAPTERS


@pytest.mark.parametrize("path", modules("core", "bots"), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_only_the_composition_root_builds_components(path: Path) -> None:
    """Core's components (and the store and Uppzy client) are constructed in bots/runner.py and nowhere else."""
    rel = path.relative_to(ROOT).as_posix()
    if rel == COMPOSITION_ROOT:
        return
    built = constructed(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))) & COMPONENTS
    if rel in OWN_SUPERVISORS:
        built -= {"TaskSupervisor"}
    if rel == "core/sqlite_store.py":
        built -= {"SqliteStore"}  # its own open() classmethod
    assert not built, f"{rel} builds {sorted(built)}; only {COMPOSITION_ROOT} wires components"


def test_architecture_scans_catch_violations() -> None:
    """The scans flag a forbidden core import and a component built outside the root."""
    assert core_imports(ast.parse("from core.relay import Relay\nfrom core import store")) == {"core.relay",
                                                                                               "core.store"}
    assert {"Relay", "SqliteStore"} <= constructed(ast.parse("Relay(x)\nSqliteStore.open(p)"))
