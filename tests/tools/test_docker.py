"""The Dockerfile, compose.yaml and deploy/haproxy.cfg say what the README promises.

No Docker engine runs here, so the files are parsed and checked: a slim multi-stage image that
runs as a non-root user with a HEALTHCHECK on /healthz, two redis-engine nodes, Redis with AOF,
and a balancer sending every path to both nodes. What can run without Docker does: the
HEALTHCHECK command against a real node, and the compose `init` command that writes the apps
file once.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from loadtest.node import NodeProcess, free_port, running
from rtt.settings import Settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(60)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if not stripped.endswith("\\"):
            keyword, _, rest = pending.partition(" ")
            out.append((keyword.upper(), rest.strip()))
            pending = ""
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def healthcheck_command() -> list[str]:
    [args] = [a for k, a in final_stage(ROOT / "Dockerfile") if k == "HEALTHCHECK"]
    _, _, exec_form = args.partition(" CMD ")
    return list(json.loads(exec_form))


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def haproxy() -> dict[str, list[list[str]]]:
    """Each section header line of haproxy.cfg with its directives (comments dropped)."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in (ROOT / "deploy" / "haproxy.cfg").read_text().splitlines():
        words = shlex.split(line.split("#", 1)[0])
        if not words:
            continue
        if not line[0].isspace():
            current = sections.setdefault(" ".join(words), [])
        else:
            current.append(words)
    return sections


def test_the_image_is_slim_multi_stage_and_runs_as_a_non_root_user() -> None:
    steps = instructions(ROOT / "Dockerfile")
    bases = [args.split()[0] for keyword, args in steps if keyword == "FROM"]
    assert len(bases) >= 2 and all(b == "python:3.11-slim" for b in bases), bases
    final = final_stage(ROOT / "Dockerfile")
    keywords = [k for k, _ in final]
    [user] = [a for k, a in final if k == "USER"]
    assert user not in ("root", "0") and "useradd --system --uid 10001" in dict(final)["RUN"]
    assert keywords.index("USER") < keywords.index("CMD")
    assert json.loads(dict(final)["CMD"]) == ["rtt", "serve"]
    assert "8080" in dict(final)["EXPOSE"]
    env = dict(final)["ENV"]
    assert "RTT_HOST=0.0.0.0" in env and "RTT_PORT=8080" in env
    # the build tools and the wheels stay in the build stage
    assert "--mount=type=bind,from=build" in dict(final)["RUN"]
    assert "COPY" not in keywords


def test_the_healthcheck_asks_healthz_with_python_not_curl() -> None:
    [args] = [a for k, a in final_stage(ROOT / "Dockerfile") if k == "HEALTHCHECK"]
    assert "--interval=" in args and "--timeout=" in args
    command = healthcheck_command()
    assert command[0] == "python" and "/healthz" in command[-1]
    assert not any(tool in args for tool in ("curl", "wget"))


def test_the_healthcheck_command_passes_on_a_live_node_and_fails_on_a_dead_one(
    tmp_path: Path,
) -> None:
    command = [sys.executable, *healthcheck_command()[1:]]
    with running(NodeProcess(directory=tmp_path)) as node:
        live = subprocess.run(
            command, env={**os.environ, "RTT_PORT": str(node.port)}, timeout=10, check=False
        )
    assert live.returncode == 0
    dead = subprocess.run(
        command,
        env={**os.environ, "RTT_PORT": str(free_port())},
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert dead.returncode != 0


def test_compose_runs_two_redis_nodes_on_redis_with_aof_behind_a_balancer() -> None:
    services = compose()["services"]
    redis = services["redis"]
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    assert "redis-cli" in redis["healthcheck"]["test"]
    nodes = {name: s for name, s in services.items() if s.get("image") == "rtt:local"}
    assert {"rtt1", "rtt2", "init"} <= set(nodes)
    for name in ("rtt1", "rtt2"):
        node = services[name]
        env = node["environment"]
        assert env["RTT_ENGINE"] == "redis"
        assert env["RTT_REDIS_URL"].startswith("redis://redis:6379/")
        assert (
            env["RTT_CONFIG"] == "/config/rtt.toml" and "rtt-config:/config:ro" in node["volumes"]
        )
        assert node["depends_on"]["redis"]["condition"] == "service_healthy"
        assert node["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert node["build"] == "." and "ports" not in node  # reached through the balancer only
        grace = int(node["stop_grace_period"].rstrip("s"))
        assert grace > Settings.model_fields["shutdown_seconds"].default
    lb = services["lb"]
    assert lb["image"].startswith("haproxy:") and "8080:8080" in lb["ports"]
    [mount] = lb["volumes"]
    source, target = mount.split(":")[:2]
    assert (ROOT / source).resolve() == ROOT / "deploy" / "haproxy.cfg"
    assert target == "/usr/local/etc/haproxy/haproxy.cfg"
    assert set(lb["depends_on"]) == {"rtt1", "rtt2"}
    assert set(compose()["volumes"]) == {"redis-data", "rtt-config"}


def test_the_balancer_sends_every_path_websockets_included_to_both_nodes() -> None:
    config = haproxy()
    assert ["mode", "http"] in config["defaults"]  # HTTP mode tunnels WebSocket upgrades
    timeouts = {words[1]: words[2] for words in config["defaults"] if words[0] == "timeout"}
    heartbeat = Settings.model_fields["heartbeat_seconds"].default
    assert timeouts["tunnel"] == "1h" and 2 * heartbeat < 3600  # an idle socket outlives beats
    assert int(timeouts["client"].rstrip("s")) > 2 * heartbeat - 1
    [frontend] = [name for name in config if name.startswith("frontend")]
    directives = config[frontend]
    assert ["bind", ":8080"] in directives
    assert not any(words[0] in ("use_backend", "http-request") for words in directives), (
        "no path is routed elsewhere: /rtt, /s2sdispatcher and / all reach the nodes"
    )
    [backend_name] = [w[1] for w in directives if w[0] == "default_backend"]
    backend = config[f"backend {backend_name}"]
    servers = {w[1]: w[2] for w in backend if w[0] == "server"}
    node_port = compose()["services"]["rtt1"]["environment"].get("RTT_PORT", "8080")
    assert servers == {"rtt1": f"rtt1:{node_port}", "rtt2": f"rtt2:{node_port}"}
    assert ["option", "httpchk", "GET", "/readyz"] in backend
    [defaults] = [w for w in backend if w[0] == "default-server"]
    assert "check" in defaults


def test_the_compose_init_command_writes_the_apps_file_once(tmp_path: Path) -> None:
    """compose's `init` service, run here with /config pointing at a temp dir: the first run
    writes a valid file, the second leaves it alone and still succeeds."""
    [shell, flag, script] = compose()["services"]["init"]["command"]
    assert (shell, flag) == ("sh", "-c")
    script = script.replace("/config", str(tmp_path))
    rtt = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{rtt}:{os.environ['PATH']}"}
    first = subprocess.run([shell, flag, script], env=env, timeout=30, capture_output=True)
    assert first.returncode == 0, first.stderr
    written = (tmp_path / "rtt.toml").read_text()
    again = subprocess.run([shell, flag, script], env=env, timeout=30, capture_output=True)
    assert again.returncode == 0 and (tmp_path / "rtt.toml").read_text() == written
    check = subprocess.run(
        [f"{rtt}/rtt", "check-config", str(tmp_path / "rtt.toml")], timeout=30, check=False
    )
    assert check.returncode == 0
