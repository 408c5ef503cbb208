"""What the bot's /metrics really exports, for the tests that check deploy/ (alerts, dashboard) against it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.metrics import MetricWrapperBase

from core.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus to every scraped series
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_NAME = re.compile(r"\b((?:uppzy_bot|process)_[a-z_]+)\b")


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape can return, with the labels it carries (a histogram's `_bucket` adds `le`)."""
    metrics = Metrics()
    labels = {w._name: frozenset(w._labelnames) for w in vars(metrics).values()  # type: ignore[attr-defined]
              if isinstance(w, MetricWrapperBase)}
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            own = labels.get(family.name, labels.get(family.name + "_total", frozenset()))
            series[family.name + suffix] = own | ({"le"} if suffix == "_bucket" else set())
    return series


def metric_names(expr: str) -> set[str]:
    """The uppzy_bot_* and process_* series an expression reads."""
    return set(_NAME.findall(expr))


def selector_labels(expr: str) -> dict[str, set[str]]:
    """Label names used in each series selector `name{a="x", b=~"y"}` of an expression."""
    found: dict[str, set[str]] = {}
    for name, body in re.findall(r"\b((?:uppzy_bot|process)_[a-z_]+)\{([^}]*)\}", expr):
        found.setdefault(name, set()).update(re.findall(r"([a-zA-Z_]+)\s*(?:=~|!~|!=|=)", body))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in `by (…)`, `on (…)` and `ignoring (…)` clauses."""
    return {label.strip() for group in re.findall(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)", expr)
            for label in group.split(",") if label.strip()}


# ---- deploy/compose.yml and deploy/k8s/: what must hold, as lists of problems (empty = fine) --------------------

BOT_PORT = 3000  # the Dockerfile's PORT and EXPOSE
SHUTDOWN_SECONDS = 10  # bots/runner.py: SIGTERM -> exit within ~10 s
_PLACEHOLDER = "REPLACE_ME"
_TOKEN_SHAPES = re.compile(r"xox[abpr]-[0-9A-Za-z-]{10,}|xapp-\d-[0-9A-Za-z-]{10,}|[\w-]{24}\.[\w-]{6}\.[\w-]{27,}")


def _seconds(value: Any) -> float:
    """Compose durations ('15s', '1m30s', 90) in seconds."""
    if isinstance(value, int | float):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", str(value))
    return sum(float(n) * units[u] for n, u in parts)


def _env(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's `environment:` as a dict (map or list form)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _words(test: Any) -> str:
    """A healthcheck `test` (list or string) as one string."""
    return " ".join(test) if isinstance(test, list) else str(test)


def compose_problems(doc: dict[str, Any]) -> list[str]:
    """PostgreSQL with a named volume and pg_isready; three bot replicas on /readyz that wait for a healthy db."""
    problems: list[str] = []
    services = doc.get("services") or {}
    dbs = [n for n, s in services.items() if str(s.get("image", "")).startswith("postgres:15")]
    if len(dbs) != 1:
        return [f"expected one postgres:15 service, found {dbs}"]
    db_name, db = dbs[0], services[dbs[0]]
    mounts = [str(v).split(":", 1)[0] for v in db.get("volumes", [])]
    if not any(m in (doc.get("volumes") or {}) for m in mounts):
        problems.append(f"{db_name}: its data is not on a named volume ({mounts})")
    if "pg_isready" not in _words((db.get("healthcheck") or {}).get("test", "")):
        problems.append(f"{db_name}: no pg_isready healthcheck")
    bots = {n: s for n, s in services.items() if n != db_name}
    replicas = sum(int((s.get("deploy") or {}).get("replicas", 1)) for s in bots.values())
    if replicas != 3:
        problems.append(f"expected 3 bot replicas, found {replicas}")
    for name, bot in bots.items():
        problems += [f"{name}: {p}" for p in _compose_bot_problems(bot, db_name, db)]
    return problems


def _compose_bot_problems(bot: dict[str, Any], db_name: str, db: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    env = _env(bot)
    url = urlsplit(re.sub(r"\$\{[^}]*\}", "secret", env.get("DATABASE_URL", "")))
    db_env = _env(db)
    if url.scheme != "postgresql" or url.hostname != db_name or url.port != 5432:
        problems.append(f"DATABASE_URL must be postgresql://…@{db_name}:5432/…, is {env.get('DATABASE_URL')!r}")
    elif (url.username, url.path.lstrip("/")) != (db_env.get("POSTGRES_USER"), db_env.get("POSTGRES_DB")):
        problems.append("DATABASE_URL user/database differ from the db service's POSTGRES_USER/POSTGRES_DB")
    elif "POSTGRES_PASSWORD" not in env.get("DATABASE_URL", ""):
        problems.append("DATABASE_URL does not take the password from ${POSTGRES_PASSWORD}")
    if not bot.get("env_file"):
        problems.append("no env_file with the credentials")
    depends = bot.get("depends_on") or {}
    if not isinstance(depends, dict) or (depends.get(db_name) or {}).get("condition") != "service_healthy":
        problems.append(f"does not wait for {db_name} to be healthy (depends_on condition service_healthy)")
    if bot.get("restart") != "unless-stopped":
        problems.append("restart is not unless-stopped")
    check = _words((bot.get("healthcheck") or {}).get("test", ""))
    port = int(env.get("PORT", BOT_PORT))
    if f"127.0.0.1:{port}/readyz" not in check and f"localhost:{port}/readyz" not in check:
        problems.append(f"healthcheck does not probe /readyz on PORT {port}: {check!r}")
    if "curl" in check or "wget" in check:
        problems.append("healthcheck uses a tool the python:3.11-slim image lacks")
    if not SHUTDOWN_SECONDS < _seconds(bot.get("stop_grace_period", "10s")) <= 30:
        problems.append(f"stop_grace_period must leave the ~{SHUTDOWN_SECONDS} s shutdown room (and stay short)")
    if bot.get("container_name") or any(":" in str(p).split("/")[0] and "-" not in str(p).split(":")[0]
                                        for p in bot.get("ports", [])):
        problems.append("a fixed container_name or host port cannot be shared by 3 replicas")
    return problems


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def k8s_problems(docs: list[dict[str, Any]]) -> list[str]:
    """A 3-replica Deployment probed on /readyz and /healthz, a PDB, a Service and a Secret that all fit together."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc.get("kind", "?"), []).append(doc)
    missing = {"Deployment", "Service", "PodDisruptionBudget", "Secret"} - by_kind.keys()
    if missing:
        return [f"missing {sorted(missing)}"]
    deployment = by_kind["Deployment"][0]
    spec, pod = deployment["spec"], deployment["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    problems: list[str] = []
    if spec.get("replicas") != 3:
        problems.append(f"Deployment replicas is {spec.get('replicas')}, not 3")
    if not _matches(spec["selector"].get("matchLabels", {}), labels):
        problems.append("Deployment selector does not match its pod labels")
    grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
    if not SHUTDOWN_SECONDS < grace <= 60:
        problems.append(f"terminationGracePeriodSeconds {grace} does not fit the ~{SHUTDOWN_SECONDS} s shutdown")
    secrets = {s["metadata"]["name"]: s for s in by_kind["Secret"]}
    for container in pod["spec"]["containers"]:
        problems += _container_problems(container, secrets)
    ports = {p.get("name"): p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    for pdb in by_kind["PodDisruptionBudget"]:
        if not _matches(pdb["spec"]["selector"].get("matchLabels", {}), labels):
            problems.append("PodDisruptionBudget selector does not match the pod labels")
        keeps = pdb["spec"].get("minAvailable", 3 - int(pdb["spec"].get("maxUnavailable", 0)))
        if not 2 <= int(keeps) < 3:
            problems.append("PodDisruptionBudget must keep 2 of 3 pods and still allow a drain")
    for service in by_kind["Service"]:
        if not _matches(service["spec"].get("selector", {}), labels):
            problems.append("Service selector does not match the pod labels")
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if target not in ports and target not in ports.values():
                problems.append(f"Service targetPort {target} is no container port ({ports})")
    for secret in by_kind["Secret"]:
        problems += _secret_problems(secret)
    return problems


def _container_problems(container: dict[str, Any], secrets: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    if int(env.get("PORT") or BOT_PORT) not in ports.values():
        problems.append(f"PORT {env.get('PORT')} is not a containerPort ({ports})")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet") or {}
        if get.get("path") != path:
            problems.append(f"{probe} path is {get.get('path')!r}, not {path}")
        if get.get("port") not in ports and get.get("port") not in ports.values():
            problems.append(f"{probe} port {get.get('port')!r} is no container port ({ports})")
    resources = container.get("resources") or {}
    if not all((resources.get(k) or {}).get("memory") for k in ("requests", "limits")):
        problems.append("resources need memory requests and limits")
    refs = [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
    if not refs or any(r not in secrets for r in refs):
        problems.append(f"envFrom secretRef {refs} does not name the Secret ({sorted(secrets)})")
    return problems


def _secret_problems(secret: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    data = secret.get("stringData") or {}
    for key, value in data.items():
        if _TOKEN_SHAPES.search(str(value)) or (_PLACEHOLDER not in str(value)):
            problems.append(f"Secret {key} must be a {_PLACEHOLDER} placeholder, not a real-looking value")
    if not str(data.get("DATABASE_URL", "")).startswith("postgresql://"):
        problems.append("Secret DATABASE_URL is not a postgresql:// URL")
    return problems
