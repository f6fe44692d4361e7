"""The official brainCloud JavaScript client (npm `braincloud`, pinned below), unmodified,
against a real rtt node on each engine: tests/compat/braincloud_client.js signs in, enables
RTT, receives an S2S message and event on its callbacks, reads and marks its inbox, deletes
the event, disables RTT and signs in again with its stored anonymous id. Run once as is and
once with the app's piggyback_events on, where the event must also reach the library's event
callback (registerEventCallback) through a response's `events` array, once.

The package is installed by npm into `.cache/` (gitignored) on first use, so a fresh clone's
`.ci/run` installs it itself. Without node/npm the test skips, unless RTT_REQUIRE_NODE is set
(as `.ci/run` does), where it fails."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import running
from tests.support.server import test_apps as apps_for
from tests.support.server import test_settings as settings_for

BRAINCLOUD_VERSION = "4.15.0"
PACKAGES = [
    f"braincloud@{BRAINCLOUD_VERSION}",
    "ws@8.18.3",
    "xmlhttprequest@1.8.0",
    "node-localstorage@3.0.5",
]
ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".cache" / f"braincloud-{BRAINCLOUD_VERSION}"
SCRIPT = ROOT / "tests" / "compat" / "braincloud_client.js"
INSTALL_SECONDS = 300
RUN_SECONDS = 90

pytestmark = pytest.mark.timeout(INSTALL_SECONDS + RUN_SECONDS + 30)


def _node_modules() -> Path:
    """The pinned client in the cache, installed once (a file lock serializes xdist workers)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("RTT_REQUIRE_NODE"):
            pytest.fail("node and npm are required for the brainCloud compatibility test")
        pytest.skip("node/npm not installed")
    CACHE.mkdir(parents=True, exist_ok=True)
    modules = CACHE / "node_modules"
    with (CACHE.parent / f"{CACHE.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (modules / "braincloud" / "package.json").exists():
            (CACHE / "package.json").write_text('{"name": "rtt-compat", "private": true}')
            subprocess.run(
                ["npm", "install", "--legacy-peer-deps", "--no-audit", "--no-fund", *PACKAGES],
                cwd=CACHE,
                check=True,
                timeout=INSTALL_SECONDS,
                capture_output=True,
            )
    return modules


@pytest.mark.parametrize("piggyback", [False, True], ids=["rtt", "piggyback"])
async def test_official_braincloud_client_end_to_end(tmp_path: Path, piggyback: bool):
    """Fails if the unmodified official client cannot sign in, get its pushes over RTT, read
    and mark its inbox through /dispatcherv2, or sign in again as the same profile; or if its
    event callback gets a piggybacked event other than once, with the app's switch on, or at
    all, with it off."""
    modules = await asyncio.to_thread(_node_modules)
    apps = apps_for(tmp_path)
    features = apps["demo"].features.model_copy(update={"piggyback_events": piggyback})
    apps["demo"] = app = apps["demo"].model_copy(update={"features": features})
    settings = settings_for(tmp_path, apps=apps)
    storage = tmp_path / "localstorage"
    storage.mkdir()
    async with running(settings) as server:
        process = await asyncio.create_subprocess_exec(
            "node",
            str(SCRIPT),
            env=os.environ
            | {
                "NODE_PATH": str(modules),
                "RTT_URL": server.url,
                "BC_APP": "demo",
                "BC_SECRET": app.secret,
                "BC_SERVER": "backend",
                "BC_SERVER_SECRET": app.servers["backend"],
                "BC_STORAGE": str(storage),
            }
            | ({"BC_PIGGYBACK": "1"} if piggyback else {}),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(process.communicate(), RUN_SECONDS)
        finally:
            if process.returncode is None:
                process.kill()
    lines = [line for line in out.decode().splitlines() if line.startswith("{")]
    assert lines, (out.decode(), err.decode())
    result = json.loads(lines[-1])
    assert result["ok"], result
    assert result["version"] == BRAINCLOUD_VERSION
    first, again = result["first"], result["again"]
    assert first["newUser"] == "true" and again["newUser"] == "false"
    assert again["profileId"] == first["profileId"]
    assert again["sessionId"] != first["sessionId"]
    assert result["storedAnonymousId"] == result["anonymousId"]
    assert type(result["connected"]["data"]["heartbeatSeconds"]) is int
    [message] = result["messages"]
    assert message["operation"] == "INCOMING"
    assert message["data"]["msgId"] == result["sentMsgId"]
    assert message["data"]["message"]["from"] == {"id": None, "name": "Admin"}
    [event] = result["events"]
    assert event["data"]["eventType"] == "greeting" and event["data"]["fromPlayerId"] is None
    assert result["deleted"] == {"requested": 1, "actual": 1}
    if piggyback:  # the same stored event, once, in the shape GET_EVENTS lists it
        assert result["piggybacked"] == [{"events": [event["data"]]}]
    else:
        assert result["piggybacked"] == []
    assert result["before"]["inbox"] == {"total": 1, "unread": 1}
    assert [i["msgId"] for i in result["page"]["results"]["items"]] == [result["sentMsgId"]]
    assert result["marked"] == {"requested": 1, "actual": 1}
    assert result["after"]["inbox"] == {"total": 1, "unread": 0}
    assert result["rttStatus"] == "Disconnected"
