"""A push dispatcher killed (SIGKILL) between reading an outbox entry and settling it.

The killed dispatcher had delivered the notification to some destinations and was waiting on
another (the fake APNs holds the request). Whoever takes over once the lease lapses sends it
to the destination that never got it, and to none of the others: every destination is
notified exactly once, and the outbox ends empty.
- local: the node is killed and a new node starts on the same SQLite file;
- redis: `rtt push-worker` processes beside a node whose own dispatcher is off; the second
  worker takes the entry over from the consumer group (XAUTOCLAIM past the lease).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from loadtest.node import NodeProcess
from tests.support.clients import S2S
from tests.support.nodes import engine_env
from tests.support.push_fakes import fake_providers, push_toml
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(90)

LEASE = "2"


def worker(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rtt", "push-worker", "--config", str(config)],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(5)


@pytest.mark.parametrize("engine", ["local", "redis"])
async def test_killed_dispatcher_entry_is_taken_over_and_notified_once(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with fake_providers(tmp_path) as fake:
        f = fake.fakes
        assert f.keys is not None
        toml = push_toml(fake, f.keys)
        config = tmp_path / "push.toml"
        config.write_text(toml)
        env = {
            **engine_env(request, engine),
            "RTT_DATABASE": str(tmp_path / "rtt.db"),
            "RTT_PUSH_POLL_SECONDS": "0.05",
            "RTT_PUSH_LEASE_SECONDS": LEASE,
        }
        if engine == "redis":
            env["RTT_PUSH_DISPATCHER"] = "false"
        who = f"p-{uuid.uuid4().hex[:8]}"
        f.tokens["slow01"] = "hold"
        node = NodeProcess(toml, env=env, directory=tmp_path)
        workers: list[subprocess.Popen[bytes]] = []
        try:
            await asyncio.to_thread(node.start)
            s2s = S2S(node)  # type: ignore[arg-type]
            for platform, token in (("fcm", "fast01"), ("apns", "slow01")):
                await s2s.ok(
                    "push",
                    "REGISTER_DEVICE",
                    {"profileId": who, "platform": platform, "token": token},
                )
            if engine == "redis":
                workers.append(worker(config, env, tmp_path / "worker-1.log"))
            await s2s.send([who])
            await eventually(
                lambda: asyncio.sleep(0, (f.held, len(f.to("fcm:fast01")), len(f.to("webhook")))),
                lambda seen: seen == (1, 1, 1),
                timeout=15,
                what="delivered to two destinations, the third held",
            )
            # The dispatcher records a delivery right after the provider's answer; a kill
            # inside that moment is the duplicate at-least-once allows (README). Let the two
            # answered deliveries be recorded, then kill: after reading, before settling.
            await asyncio.sleep(0.5)
            if engine == "redis":
                kill(workers[0])
            else:
                node.kill()
            f.tokens["slow01"] = "ok"
            f.release.set()  # the held request now fails: its client is gone anyway
            if engine == "redis":
                workers.append(worker(config, env, tmp_path / "worker-2.log"))
            else:
                node = NodeProcess(toml, env=env, directory=tmp_path)
                await asyncio.to_thread(node.start)
                await s2s.close()
                s2s = S2S(node)  # type: ignore[arg-type]
            await eventually(
                lambda: asyncio.sleep(0, len(f.to("apns:slow01"))),
                lambda n: n == 1,
                timeout=20,
                what="the held destination notified by the next dispatcher",
            )
            pending = await s2s.ok("push", "SYS_GET_PENDING", {"profileId": who})
            await eventually(
                lambda: s2s.ok("push", "SYS_GET_PENDING", {"profileId": who}),
                lambda data: data["items"] == [],
                timeout=10,
                what="the entry settled",
            )
            await asyncio.sleep(float(LEASE) + 0.5)  # nothing more arrives after another lease
            assert len(f.to("apns:slow01")) == 1, pending
            assert len(f.to("fcm:fast01")) == 1 and len(f.to("webhook")) == 1
            assert f.refused == []
            await s2s.close()
        finally:
            for w in workers:
                if w.poll() is None:
                    w.terminate()
                    w.wait(10)
            node.stop()
