"""The operator's commands as a newcomer runs them: the installed `rtt` console script, as a
subprocess, against a real `rtt serve` node (also a subprocess).

`rtt send` must reach a connected socket and print the msgId; `rtt status` must count what the
node holds; `rtt check-config` must name the app and field of every problem; `rtt init` must
write a file a node accepts, with fresh secrets, and never overwrite one.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from loadtest.node import NodeProcess, free_port
from tests.support.clients import S2S, open_socket
from tests.support.nodes import engine_env
from tests.support.server import APPS_TOML

RTT = str(Path(sys.executable).with_name("rtt"))  # the console script pip installed

pytestmark = pytest.mark.timeout(60)


def rtt(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `rtt` console script to completion (bounded)."""
    env = {k: v for k, v in os.environ.items() if k != "RTT_CONFIG"}
    return subprocess.run(
        [RTT, *args], capture_output=True, text=True, timeout=30, cwd=cwd, env=env
    )


async def rtt_async(*args: str) -> subprocess.CompletedProcess[str]:
    """`rtt(...)` off the event loop, so sockets of the test keep being served."""
    return await asyncio.to_thread(rtt, *args)


@pytest.fixture
def apps_file(tmp_path: Path) -> Path:
    path = tmp_path / "apps.toml"
    path.write_text(APPS_TOML)
    return path


@pytest.fixture
def node(tmp_path: Path) -> Iterator[NodeProcess]:
    process = NodeProcess(APPS_TOML, directory=tmp_path)
    process.start(20.0)
    try:
        yield process
    finally:
        process.stop()


def test_every_command_explains_itself_with_help() -> None:
    """A newcomer starts with --help: each command says what it does and what it needs."""
    top = rtt("--help")
    assert top.returncode == 0
    for command in ("serve", "token", "send", "status", "check-config", "init"):
        assert command in top.stdout
    expected = {
        "send": ["--app", "--to", "--text", "--url", "--config", "msgId"],
        "status": ["--url", "outbox", "sockets"],
        "check-config": ["app", "field"],
        "init": ["--path", "fresh", "overwrite"],
    }
    for command, words in expected.items():
        result = rtt(command, "--help")
        assert result.returncode == 0, result.stderr
        for word in words:
            assert word in result.stdout, (command, word, result.stdout)


async def test_send_prints_the_msg_id_and_every_recipient_receives_it(
    node: NodeProcess, apps_file: Path
) -> None:
    p1 = await open_socket(node, "p1")  # type: ignore[arg-type]
    p2 = await open_socket(node, "p2")  # type: ignore[arg-type]
    try:
        result = await rtt_async(
            *("send", "--app", "demo", "--to", "p1, p2", "--text", "héllo from the terminal"),
            *("--url", node.url, "--config", str(apps_file)),
        )
        assert result.returncode == 0, result.stderr
        msg_id = result.stdout.strip()
        assert msg_id and "\n" not in msg_id
        for client in (p1, p2):
            [frame] = await client.pushed(1)
            message = frame["data"]
            assert message["msgId"] == msg_id
            assert message["message"]["content"] == {"text": "héllo from the terminal"}
            assert message["message"]["from"] == {"id": None, "name": "System"}
    finally:
        await p1.close()
        await p2.close()


async def test_send_failures_exit_non_zero_with_the_reason(
    node: NodeProcess, tmp_path: Path, apps_file: Path
) -> None:
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(APPS_TOML.replace('backend = "server-secret"', 'backend = "not-it"'))
    base = ("send", "--app", "demo", "--text", "x", "--url", node.url)
    refused = await rtt_async(*base, "--to", "p1", "--config", str(wrong))
    assert refused.returncode == 1 and "40304" in refused.stderr, refused.stderr
    assert refused.stdout == ""
    too_many = await rtt_async(
        *("send", "--app", "tight", "--text", "x", "--url", node.url),
        *("--to", "a,b,c,d", "--config", str(apps_file)),
    )
    assert too_many.returncode == 1 and "40621" in too_many.stderr, too_many.stderr
    nobody = await rtt_async(*base, "--to", " , ", "--config", str(apps_file))
    assert nobody.returncode == 1 and "--to" in nobody.stderr
    unknown = await rtt_async(
        *base[:2], "nope", *base[3:], "--to", "p1", "--config", str(apps_file)
    )
    assert unknown.returncode == 1 and "'nope'" in unknown.stderr and "demo" in unknown.stderr
    no_config = await rtt_async(*base, "--to", "p1")
    assert no_config.returncode == 1 and "--config" in no_config.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = await rtt_async(
        *("send", "--app", "demo", "--text", "x", "--to", "p1"),
        *("--url", closed, "--config", str(apps_file)),
    )
    assert unreachable.returncode == 1 and f"cannot reach {closed}" in unreachable.stderr
    # nothing was stored by any of them: p1's inbox is empty
    s2s = S2S(node)  # type: ignore[arg-type]
    try:
        page = await s2s.ok(
            "messaging",
            "SYS_GET_MESSAGES_PAGE",
            {"context": {"pagination": {"rowsPerPage": 10, "pageNumber": 1}}},
        )
        assert page["results"]["count"] == 0, page
    finally:
        await s2s.close()


@pytest.mark.parametrize("engine", ["local", "redis"])
async def test_status_counts_sockets_and_the_push_outbox(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    node = NodeProcess(APPS_TOML, directory=tmp_path, env=engine_env(request, engine))
    await asyncio.to_thread(node.start, 20.0)
    sockets = [await open_socket(node, p) for p in ("p1", "p1", "p2")]  # type: ignore[arg-type]
    s2s = S2S(node)  # type: ignore[arg-type]
    try:
        await s2s.send(["p1", "off1", "off2"])  # two offline: two push entries
        await s2s.send(["off3"])
        result = await rtt_async("status", "--url", node.url, "--json")
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["status"] == "ok" and answer["engine"] == {
            "kind": engine,
            "ready": True,
            "error": None,
        }
        assert answer["connections"] == {"sockets": 3, "profiles": 2}
        assert answer["outbox"] == {"depth": 3, "dropped": 0}
        secrets = ("client-secret", "server-secret", "rc-secret", "admin-password", "demo")
        assert not any(s in result.stdout for s in secrets), result.stdout
        human = await rtt_async("status", "--url", node.url)
        assert human.returncode == 0, human.stderr
        assert f"engine   {engine}: ready" in human.stdout
        assert "sockets  3 (2 profiles)" in human.stdout
        assert "outbox   3 entries waiting" in human.stdout
    finally:
        await s2s.close()
        for client in sockets:
            await client.close()
        await asyncio.to_thread(node.stop)


def test_status_of_an_unreachable_node_exits_non_zero() -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = rtt("status", "--url", closed)
    assert result.returncode == 1 and f"cannot reach {closed}" in result.stderr


def test_check_config_names_the_app_and_field_of_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[apps.shop]
secret = ""
colour = "blue"
[apps.shop.servers]
backend = 12345678
[apps.shop.limits]
max_frame_bytes = -1
[apps.blog]
app_key = "k"
"""
    )
    result = rtt("check-config", str(path))
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"{path}: app '") for line in lines), lines
    text = result.stderr
    assert "app 'shop': secret: String should have at least 1 character" in text
    assert "app 'shop': colour: Extra inputs are not permitted (got 'blue')" in text
    assert "app 'shop': servers.backend: Input should be a valid string" in text
    assert "12345678" not in text  # a secret's value is never echoed
    assert "app 'shop': limits.max_frame_bytes: Input should be greater than 0 (got -1)" in text
    assert "app 'blog': secret: Field required" in text
    assert len(lines) == 5, lines


def test_check_config_refuses_bad_toml_an_empty_file_and_a_missing_one(tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text("[apps.demo\nsecret = 1\n")
    result = rtt("check-config", str(broken))
    assert result.returncode == 1 and "not valid TOML" in result.stderr
    empty = tmp_path / "empty.toml"
    empty.write_text("[apps]\n")
    result = rtt("check-config", str(empty))
    assert result.returncode == 1 and "no app is defined" in result.stderr
    result = rtt("check-config", str(tmp_path / "missing.toml"))
    assert result.returncode == 1 and "cannot read it" in result.stderr


def test_check_config_accepts_what_a_node_accepts(apps_file: Path) -> None:
    result = rtt("check-config", str(apps_file))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{apps_file}: OK"


def test_init_writes_a_private_file_with_fresh_secrets_and_never_overwrites(
    tmp_path: Path,
) -> None:
    first = rtt("init", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    path = tmp_path / "rtt.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    written = path.read_text()
    assert written.count("\n# ") > 10  # commented for the reader
    assert rtt("check-config", str(path)).returncode == 0
    again = rtt("init", cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr
    assert path.read_text() == written  # untouched
    other = tmp_path / "other.toml"
    assert rtt("init", "--path", str(other), "--app", "shop").returncode == 0
    one, two = (tomllib.loads(p.read_text())["apps"] for p in (path, other))
    assert set(one) == {"demo"} and set(two) == {"shop"}
    a, b = one["demo"], two["shop"]
    assert a["secret"] != b["secret"] and a["servers"]["backend"] != b["servers"]["backend"]
    assert a["app_secret"] != b["app_secret"] and len(a["secret"]) >= 32
    bad = rtt("init", "--path", str(tmp_path / "x.toml"), "--app", "no spaces")
    assert bad.returncode == 1 and not (tmp_path / "x.toml").exists()


async def test_a_newcomer_inits_serves_mints_a_token_and_sends(tmp_path: Path) -> None:
    """The README's path end to end: `rtt init`, `rtt serve --config`, `rtt token`, a socket
    connects with that token, `rtt send` reaches it, `rtt status` counts it."""
    assert (await asyncio.to_thread(rtt, "init", cwd=tmp_path)).returncode == 0
    path = tmp_path / "rtt.toml"
    node = NodeProcess(path.read_text(), directory=tmp_path)
    await asyncio.to_thread(node.start, 20.0)
    try:
        minted = await rtt_async(
            "token", "--app", "demo", "--profile", "ann", "--config", str(path)
        )
        assert minted.returncode == 0, minted.stderr
        client = await open_socket(node, "ann", tok=minted.stdout.strip())  # type: ignore[arg-type]
        try:
            sent = await rtt_async(
                *("send", "--app", "demo", "--to", "ann", "--text", "welcome"),
                *("--url", node.url, "--config", str(path)),
            )
            assert sent.returncode == 0, sent.stderr
            [frame] = await client.pushed(1)
            assert frame["data"]["msgId"] == sent.stdout.strip()
            status = await rtt_async("status", "--url", node.url)
            assert status.returncode == 0 and "sockets  1 (1 profiles)" in status.stdout
        finally:
            await client.close()
    finally:
        await asyncio.to_thread(node.stop)
