"""deploy/, the Dockerfile and the package metadata work as written (checked by reading them: no Docker here)."""

from __future__ import annotations

import copy
import importlib.resources
import json
import posixpath
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bots.web import WebServer
from core.metrics import Metrics
from core.setting_parsers import sqlite_path
from tests.deploy_support import (
    BOT_PORT,
    DEPLOY,
    TARGET_LABELS,
    compose_problems,
    exported_series,
    grouping_labels,
    k8s_problems,
    metric_names,
    selector_labels,
)

ROOT = DEPLOY.parent
UNIT = DEPLOY / "uppzy-bot.service"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
COMPOSE = DEPLOY / "compose.yml"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"  # oldest Kubernetes the manifests must suit (policy/v1 PDB, apps/v1 Deployment)


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=value lines as `docker run --env-file` reads them (no quotes, no expansion, comments skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value for key, value in pairs}


def _dockerfile() -> tuple[dict[str, str], str, list[str]]:
    """(ENV at run time, the WORKDIR the entrypoint runs in, VOLUMEs) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    workdir, volumes = "/", []
    for line in text.splitlines():
        op, _, rest = line.strip().partition(" ")
        if op == "ENV":
            env.update(dict(pair.split("=", 1) for pair in rest.split()))
        elif op == "WORKDIR":
            workdir = posixpath.join(workdir, rest.strip())
        elif op == "VOLUME":
            volumes += json.loads(rest) if rest.startswith("[") else rest.split()
    return env, workdir, volumes


def _database_file(url: str, cwd: str) -> str:
    return posixpath.normpath(posixpath.join(cwd, sqlite_path(url)))


def test_docker_env_file_from_the_example_keeps_the_database_in_the_volume() -> None:
    """`docker run --env-file .env` (copied from .env.example) and the image default both put it under /data."""
    env, workdir, volumes = _dockerfile()
    assert "/data" in volumes
    example = _dotenv(ROOT / ".env.example")
    for url in (env["DATABASE_URL"], {**env, **example}["DATABASE_URL"]):  # --env-file wins over the image's ENV
        assert _database_file(url, workdir).startswith("/data/"), (url, workdir)


def test_docker_image_runs_as_a_user_that_owns_the_volume() -> None:
    """The volume directory is created and owned by the non-root user the image switches to."""
    text = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\S+)", text, re.M)
    assert user and user.group(1) != "root"
    assert re.search(rf"chown {user.group(1)} /data", text)


def _unit() -> dict[str, list[str]]:
    """[Service] key -> every value (systemd allows repeats)."""
    section, values = "", {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_systemd_unit_needs_no_hand_made_user() -> None:
    """DynamicUser= with StateDirectory=: systemd makes the user and /var/lib/uppzy-bot; nothing to useradd."""
    unit = _unit()
    assert unit["DynamicUser"] == ["yes"] and unit["StateDirectory"] == ["uppzy-bot"]
    assert "User" not in unit and "Group" not in unit
    assert unit["WorkingDirectory"] == ["/var/lib/uppzy-bot"]
    # EnvironmentFile= overrides Environment=: either DATABASE_URL (also .env.example's relative one) is in the state
    # directory, the only place DynamicUser= may write.
    example = _dotenv(ROOT / ".env.example")["DATABASE_URL"]
    default = next(v for v in unit["Environment"] if v.startswith("DATABASE_URL="))[len("DATABASE_URL="):]
    for url in (default, example):
        assert _database_file(url, "/var/lib/uppzy-bot").startswith("/var/lib/uppzy-bot/"), url


def test_systemd_unit_keeps_its_limits_and_hardening() -> None:
    """LimitNOFILE for many HTTP connections, no restart on configuration errors (exit 2), the sandbox options."""
    unit = _unit()
    assert int(unit["LimitNOFILE"][0]) >= 65536
    assert unit["RestartPreventExitStatus"] == ["2"] and unit["Restart"] == ["on-failure"]
    for key in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert unit.get(key) in (["true"], ["yes"], ["strict"]), key


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds no unknown key or bad value (the install paths are swapped for existing ones)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={shutil.which('true') or '/bin/true'}", UNIT.read_text(), flags=re.M)
    text = re.sub(r"^EnvironmentFile=", "EnvironmentFile=-", text, flags=re.M)
    (tmp_path / "uppzy-bot.service").write_text(text)
    done = subprocess.run([analyze, "verify", str(tmp_path / "uppzy-bot.service")], capture_output=True, text=True,
                          timeout=30)
    if "Failed to" in done.stderr and "manager" in done.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {done.stderr.strip()[:200]}")
    assert done.returncode == 0 and "uppzy-bot.service" not in done.stderr, done.stderr


def test_package_license_is_an_spdx_string() -> None:
    """setuptools >= 77 reads `license = "…"` (PEP 639) without the deprecation warning a TOML table gets."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert isinstance(meta["project"]["license"], str)
    assert re.fullmatch(r"LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9.+-]+", meta["project"]["license"])
    assert not any(c.startswith("License ::") for c in meta["project"].get("classifiers", []))
    setuptools = next(r for r in meta["build-system"]["requires"] if r.startswith("setuptools"))
    assert tuple(int(p) for p in re.search(r">=\s*([\d.]+)", setuptools).group(1).split(".")) >= (77,)  # type: ignore[union-attr]


def _dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dash["panels"] for target in panel.get("targets", [])]


def test_dashboard_is_valid_json_with_unique_panels() -> None:
    """Importable: valid JSON, a title and uid, unique panel ids that do not overlap on the grid."""
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] and dash["uid"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine and g["x"] + g["w"] <= 24, panel["title"]
        cells |= mine


def test_dashboard_queries_only_exported_series_and_labels() -> None:
    """Every series (with its exact suffix) and every label a panel uses is on the bot's /metrics."""
    series = exported_series()
    exprs = _dashboard_exprs()
    assert exprs
    for title, expr in exprs:
        used = metric_names(expr)
        assert used and used <= series.keys(), f"{title}: {sorted(used - series.keys())} are not exported"
        for metric, keys in selector_labels(expr).items():
            assert keys <= series[metric] | TARGET_LABELS, f"{title}: {metric} has no label {keys - series[metric]}"
        known = set().union(*(series[m] for m in used)) | TARGET_LABELS
        assert grouping_labels(expr) <= known, f"{title}: groups by {grouping_labels(expr) - known}"


def test_dashboard_shows_answers_latency_pending_429s_and_feedback() -> None:
    """The five things an operator looks at first each have a panel."""
    exprs = " ".join(expr for _, expr in _dashboard_exprs())
    for needle in ("uppzy_bot_answers_delivered_total", "uppzy_bot_answer_seconds_bucket",
                   "uppzy_bot_pending_requests", 'kind="rate_limited"', "uppzy_bot_feedback_total"):
        assert needle in exprs, needle


# ---- deploy/compose.yml and deploy/k8s/ (several replicas on PostgreSQL) ----------------------------------------


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is needed to read deploy/*.yml: pip install pyyaml")


def _compose() -> dict[str, Any]:
    return _yaml().safe_load(COMPOSE.read_text())


def _k8s_docs() -> list[dict[str, Any]]:
    """Every document of every manifest in deploy/k8s/ except the kustomization."""
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in _yaml().safe_load_all(path.read_text()) if d and d.get("kind") != "Kustomization"]
    return docs


def test_bot_serves_the_probe_paths_the_deploy_files_use() -> None:
    """/readyz and /healthz are real routes of the bot's web server, and the image listens on PORT 3000."""
    paths = {r.canonical for r in WebServer(metrics=Metrics()).app.router.resources()}
    assert {"/readyz", "/healthz", "/metrics"} <= paths
    env, _, _ = _dockerfile()
    assert int(env["PORT"]) == BOT_PORT and re.search(rf"^EXPOSE {BOT_PORT}$", (ROOT / "Dockerfile").read_text(), re.M)


def test_compose_runs_postgres_and_three_replicas_checked_on_readyz() -> None:
    """deploy/compose.yml: PostgreSQL 15 on a named volume, three bot replicas on /readyz waiting for it."""
    doc = _compose()
    assert compose_problems(doc) == []
    bot = doc["services"]["bot"]
    built = COMPOSE.parent / bot["build"]["context"] / bot["build"].get("dockerfile", "Dockerfile")
    assert built.resolve() == (ROOT / "Dockerfile").resolve()  # the project's image, built from the repository root


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda d: d["services"]["bot"]["healthcheck"].update(test=["CMD", "python", "-c", "… :3000/healthz"]),
     "/readyz"),
    (lambda d: d["services"]["bot"]["deploy"].update(replicas=2), "3 bot replicas"),
    (lambda d: d["services"]["bot"]["environment"].update(DATABASE_URL="sqlite:///uppzy-bot.db"), "postgresql://"),
    (lambda d: d["services"]["bot"].update(depends_on=["db"]), "service_healthy"),
    (lambda d: d["services"]["bot"].update(stop_grace_period="5s"), "stop_grace_period"),
    (lambda d: d["services"]["bot"].update(ports=["3000:3000"]), "host port"),
    (lambda d: d["services"]["db"]["healthcheck"].update(test=["CMD", "true"]), "pg_isready"),
])
def test_compose_checks_catch_a_broken_file(mutate: Any, problem: str) -> None:
    """Each rule bites: the compose checks report what a broken edit would break."""
    doc = copy.deepcopy(_compose())
    mutate(doc)
    assert any(problem in p for p in compose_problems(doc)), compose_problems(doc)


def test_compose_file_matches_the_compose_specification() -> None:
    """The Compose Specification's JSON schema (vendored by check-jsonschema) accepts deploy/compose.yml."""
    jsonschema = pytest.importorskip("jsonschema", reason="pip install check-jsonschema to check the Compose schema")
    try:
        vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    except ModuleNotFoundError:
        pytest.skip("pip install check-jsonschema to check deploy/compose.yml against the Compose schema")
    schema = json.loads(vendor.joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert [e.message for e in validator.iter_errors(_compose())] == []


def test_kubernetes_manifests_fit_together() -> None:
    """deploy/k8s/: 3 replicas, /readyz readiness, /healthz liveness, PDB, Service and Secret matching the pods."""
    docs = _k8s_docs()
    assert k8s_problems(docs) == []
    kustomization = _yaml().safe_load((K8S / "kustomization.yaml").read_text())
    assert all((K8S / r).exists() for r in kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]  # placeholders must never be applied


def _kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == kind)


def _pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _kind(docs, "Deployment")["spec"]["template"]


def _bot(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _pod(docs)["spec"]["containers"][0]


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda d: _pod(d)["metadata"]["labels"].update({"app.kubernetes.io/name": "renamed"}), "selector"),
    (lambda d: _bot(d)["readinessProbe"]["httpGet"].update(path="/healthz"), "readinessProbe path"),
    (lambda d: _bot(d)["livenessProbe"]["httpGet"].update(port=8080), "livenessProbe port"),
    (lambda d: _kind(d, "Deployment")["spec"].update(replicas=1), "replicas"),
    (lambda d: _pod(d)["spec"].update(terminationGracePeriodSeconds=5), "terminationGracePeriodSeconds"),
    (lambda d: _bot(d)["envFrom"][0]["secretRef"].update(name="other"), "secretRef"),
    (lambda d: _bot(d).pop("resources"), "resources"),
    (lambda d: _kind(d, "PodDisruptionBudget")["spec"].update(maxUnavailable=3), "PodDisruptionBudget must keep"),
    (lambda d: _kind(d, "PodDisruptionBudget")["spec"]["selector"].update(matchLabels={"app": "x"}),
     "PodDisruptionBudget selector"),
    (lambda d: _kind(d, "Service")["spec"]["ports"][0].update(targetPort="web"), "targetPort"),
    (lambda d: _kind(d, "Secret")["stringData"].update(SLACK_BOT_TOKEN="xoxb-1234567890-abcdef"), "SLACK_BOT_TOKEN"),
])
def test_kubernetes_checks_catch_a_broken_manifest(mutate: Any, problem: str) -> None:
    """Each rule bites: a selector that no longer matches, a wrong probe path or port, a real-looking token..."""
    docs = copy.deepcopy(_k8s_docs())
    mutate(docs)
    assert any(problem in p for p in k8s_problems(docs)), k8s_problems(docs)


def test_kubernetes_manifests_match_the_api_schemas() -> None:
    """Every manifest validates (strict: no unknown field) against the Kubernetes OpenAPI schemas, offline."""
    validate = pytest.importorskip("kubernetes_validate", reason="pip install kubernetes-validate for schema checks")
    for doc in _k8s_docs():
        validate.validate(doc, K8S_VERSION, strict=True)
