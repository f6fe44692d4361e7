"""Push notifications (API.md §11) on both engines, against local fake providers.

Most tests run the node with its own dispatcher off and drive the real `Dispatcher` round by
round on the node's engine (`drain`), so what happens between a send and its notification (a
reconnect, a failure, a burst) is decided by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from rtt.core.push_dispatch import Dispatcher
from rtt.push.providers import Providers
from tests.support.clients import S2S, TIMEOUT, socket
from tests.support.metrics import scrape, value
from tests.support.push_fakes import Fakes, fake_providers, push_toml
from tests.support.server import RunningServer, running
from tests.support.server import test_settings as settings_for
from tests.support.waits import eventually

pytestmark = pytest.mark.timeout(60)


@dataclass
class Pushing:
    server: RunningServer
    fakes: Fakes
    s2s: S2S
    dispatcher: Dispatcher

    async def drain(self, rounds: int = 1) -> int:
        total = 0
        for _ in range(rounds):
            total += await self.dispatcher.drain_once()
        return total

    async def register(self, profile: str, platform: str, token: str) -> None:
        data = {"profileId": profile, "platform": platform, "token": token}
        await self.s2s.ok("push", "REGISTER_DEVICE", data)

    async def pending(self, profile: str) -> list[dict[str, Any]]:
        return (await self.s2s.ok("push", "SYS_GET_PENDING", {"profileId": profile}))["items"]


@contextlib.asynccontextmanager
async def pushing(
    tmp_path: Path, *, dispatcher: bool = False, **push: object
) -> AsyncIterator[Pushing]:
    async with fake_providers(tmp_path) as fake:
        assert fake.fakes.keys is not None
        (tmp_path / "push.toml").write_text(push_toml(fake, fake.fakes.keys, **push))
        from rtt.settings import load_apps

        settings = settings_for(
            tmp_path,
            apps=load_apps(tmp_path / "push.toml"),
            push_dispatcher=dispatcher,
            push_poll_seconds=0.05,
            push_backoff_seconds=0.05,
            push_backoff_max_seconds=0.4,
        )
        async with running(settings) as server:
            providers = Providers(settings)
            s2s = S2S(server)
            try:
                yield Pushing(
                    server,
                    fake.fakes,
                    s2s,
                    Dispatcher(
                        settings,
                        server.node.engine,
                        providers.apps,
                        on_dead=server.node.metrics.dead_lettered,
                    ),
                )
            finally:
                await s2s.close()
                await providers.close()


def profile(name: str = "p") -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def test_device_operations_s2s_and_client(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = profile()
        await p.register(who, "fcm", "fcm-token:1")
        async with socket(p.server, who) as client:
            assert (
                await client.ok(
                    "pushNotification", "REGISTER", {"deviceType": "IOS", "deviceToken": "ab01"}
                )
                == {}
            )
            assert (
                await client.ok(
                    "pushNotification", "REGISTER", {"deviceType": "ANG", "deviceToken": "f2"}
                )
                == {}
            )
            devices = (await p.s2s.ok("push", "GET_DEVICES", {"profileId": who}))["devices"]
            assert [(d["platform"], d["token"]) for d in devices] == [
                ("fcm", "fcm-token:1"), ("apns", "ab01"), ("fcm", "f2"),
            ]  # fmt: skip
            assert all(isinstance(d["registeredAt"], int) for d in devices)
            bad = await client.request(
                "pushNotification", "REGISTER", {"deviceType": "WEB", "deviceToken": "x"}
            )
            assert (bad["status"], bad["reason_code"]) == (400, 40001)
            bad = await client.request(
                "pushNotification", "REGISTER", {"deviceType": "IOS", "deviceToken": "a/../b"}
            )
            assert (bad["status"], bad["reason_code"]) == (400, 40001)
            bad = await client.request("pushNotification", "REGISTER", {"deviceType": "IOS"})
            assert (bad["status"], bad["reason_code"]) == (400, 40358)
            await client.ok(
                "pushNotification", "DEREGISTER", {"deviceType": "IOS", "deviceToken": "ab01"}
            )
            devices = (await p.s2s.ok("push", "GET_DEVICES", {"profileId": who}))["devices"]
            assert [d["token"] for d in devices] == ["fcm-token:1", "f2"]
            await client.ok("pushNotification", "DEREGISTER_ALL", {})
        assert (await p.s2s.ok("push", "GET_DEVICES", {"profileId": who}))["devices"] == []
        _, body = await p.s2s.call(
            "push", "REGISTER_DEVICE", {"profileId": who, "platform": "sms", "token": "1"}
        )
        assert (body["status"], body["reason_code"]) == (400, 40001)
        _, body = await p.s2s.call(
            "pushNotification", "REGISTER", {"deviceType": "IOS", "deviceToken": "ab"}
        )
        assert (body["status"], body["reason_code"]) == (403, 40304)  # a client operation
        await p.register(who, "apns", "cd02")
        await p.s2s.ok(
            "push", "REMOVE_DEVICE", {"profileId": who, "platform": "apns", "token": "cd02"}
        )
        assert (await p.s2s.ok("push", "GET_DEVICES", {"profileId": who}))["devices"] == []


async def test_devices_per_profile_are_bounded(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = profile()
        for i in range(12):  # RTT_PUSH_DEVICES_MAX is 10
            await p.register(who, "fcm", f"t{i}")
            await asyncio.sleep(0.002)
        devices = (await p.s2s.ok("push", "GET_DEVICES", {"profileId": who}))["devices"]
        assert [d["token"] for d in devices] == [f"t{i}" for i in range(2, 12)]


async def test_message_goes_to_webhook_and_every_device(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = profile()
        await p.register(who, "fcm", "fcm-a")
        await p.register(who, "apns", "aa11")
        msg_id = await p.s2s.send([who], {"text": "hello there", "subject": "s"})
        assert len(await p.pending(who)) == 1
        assert (await p.s2s.ok("push", "SYS_GET_PENDING", {}))["depth"] == 1
        assert await p.drain() == 1
        assert (await p.s2s.ok("push", "SYS_GET_PENDING", {}))["depth"] == 0
        f = p.fakes
        assert f.refused == []
        [hook] = f.to("webhook")
        assert hook == {
            "appId": "demo", "profileId": who, "kind": "message", "id": msg_id,
            "title": "App Administrator", "body": "hello there", "data": {"msgId": msg_id},
            "createdAt": hook["createdAt"],
        }  # fmt: skip
        [fcm] = f.to("fcm:fcm-a")
        assert fcm["notification"] == {"title": "App Administrator", "body": "hello there"}
        assert fcm["data"]["id"] == msg_id and fcm["data"]["kind"] == "message"
        [apns] = f.to("apns:aa11")
        assert apns["payload"]["aps"]["alert"] == {
            "title": "App Administrator",
            "body": "hello there",
        }
        assert apns["headers"]["apns-push-type"] == "alert"
        assert apns["headers"]["apns-collapse-id"] == fcm["android"]["collapse_key"]
        assert await p.pending(who) == []
        # a second send reuses the cached OAuth2 access token and the APNs provider token
        await p.s2s.send([who], {"text": "again"})
        await p.drain()
        assert len(f.to("fcm:fcm-a")) == 2 and f.token_requests == 1
        assert f.refused == []


async def test_events_are_notified(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = profile()
        await p.s2s.ok(
            "event", "SYS_SEND_EVENT_TO_PROFILES",
            {"toIds": [who], "eventType": "trade", "eventData": {"x": 1}},
        )  # fmt: skip
        await p.drain()
        [hook] = p.fakes.to("webhook")
        assert (hook["kind"], hook["title"], hook["data"]) == ("event", "trade", {"x": 1})


def rc_headers() -> dict[str, str]:
    nonce, stamp = uuid.uuid4().hex[:12], str(int(time.time() * 1000))
    sig = hashlib.sha1(("rc-secret" + nonce + stamp).encode()).hexdigest()
    return {"App-Key": "demo-key", "Nonce": nonce, "Timestamp": stamp, "Signature": sig}


async def test_rongcloud_push_fields_silent_push_and_disable_push(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p, httpx.AsyncClient(base_url=p.server.url) as http:
        loud, quiet, none = profile("loud"), profile("quiet"), profile("none")
        for who, token in ((loud, "fa"), (quiet, "fb"), (none, "fc")):
            await p.register(who, "fcm", token)
        await p.register(quiet, "apns", "bb22")
        content = orjson.dumps({"content": "hi"}).decode()

        async def send(to: str, **extra: Any) -> None:
            body = {"fromUserId": "notices", "toUserIds": [to], "messageType": "RC:TxtMsg",
                    "content": content, **extra}  # fmt: skip
            r = await http.post("/v4/system-channel/message/send", json=body, headers=rc_headers())
            assert r.status_code == 200, r.text

        await send(loud, pushContent="Sale!", pushData="deep-link", pushExt='{"title":"Shop"}')
        await send(quiet, pushContent="sync", contentAvailable=1)
        await send(none, pushContent="never", disablePush=True)
        await p.drain()
        hooks = {h["profileId"]: h for h in p.fakes.to("webhook")}
        assert none not in hooks  # disablePush: no notification at all
        assert p.fakes.to("fcm:fc") == []
        h = hooks[loud]
        assert (h["kind"], h["title"], h["body"]) == ("system", "Shop", "Sale!")
        assert h["pushExt"] == {"title": "Shop"} and h["data"]["pushData"] == "deep-link"
        assert "contentAvailable" not in h
        [fcm] = p.fakes.to("fcm:fa")
        assert (
            fcm["notification"]["body"] == "Sale!" and fcm["data"]["pushExt"] == '{"title":"Shop"}'
        )
        assert hooks[quiet]["contentAvailable"] is True
        [silent] = p.fakes.to("fcm:fb")
        assert "notification" not in silent  # data only: no banner
        assert silent["apns"]["payload"]["aps"] == {"content-available": 1}
        [ios] = p.fakes.to("apns:bb22")
        assert ios["payload"]["aps"] == {"content-available": 1}
        assert ios["headers"]["apns-push-type"] == "background"
        assert ios["headers"]["apns-priority"] == "5"
        assert p.fakes.refused == []


async def test_a_profile_that_reconnects_before_dispatch_is_not_notified(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who, other = profile(), profile()
        await p.register(who, "fcm", "back")
        await p.s2s.send([who, other])
        assert len(await p.pending(who)) == 1  # offline at send time: queued
        async with socket(p.server, who, since=0) as client:
            await client.pushed(1)  # it got the message on resume
            await p.drain()
        assert p.fakes.to("fcm:back") == []
        assert [h["profileId"] for h in p.fakes.to("webhook")] == [other]
        assert await p.pending(who) == []  # settled, not left to buzz later


async def test_failing_provider_backs_off_then_dead_letters(tmp_path: Path) -> None:
    async with pushing(tmp_path, max_attempts=4) as p:
        p.fakes.webhook_mode = "fail"
        who = profile()
        msg_id = await p.s2s.send([who])
        async with asyncio.timeout(20):
            while not (await p.s2s.ok("push", "GET_DEAD_LETTERS", {}))["items"]:
                await p.drain()
                await asyncio.sleep(0.01)
        times = [t for d, t in p.fakes.attempts if d == "webhook"]
        assert len(times) == 4
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # equal jitter: retry n waits between half and all of 0.05 * 2^(n-1) seconds
        for n, gap in enumerate(gaps, start=1):
            assert 0.05 * 2 ** (n - 1) / 2 - 0.01 <= gap, gaps
        assert gaps[2] > gaps[0]
        [dead] = (await p.s2s.ok("push", "GET_DEAD_LETTERS", {"limit": 10}))["items"]
        assert (dead["profileId"], dead["ref"], dead["attempts"]) == (who, msg_id, 4)
        assert "503" in dead["error"] and isinstance(dead["failedAt"], int)
        assert await p.pending(who) == []
        assert p.dispatcher.counters.dead == 1 and p.dispatcher.counters.retried == 3
        samples = await scrape(p.server)
        assert value(samples, "rtt_push_dead_letters_total", app="demo") == 1.0


async def test_retry_never_notifies_a_destination_twice(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = profile()
        await p.register(who, "fcm", "good")
        await p.register(who, "apns", "cc33")
        p.fakes.tokens["cc33"] = "fail"
        await p.s2s.send([who])
        await p.drain()
        assert len(p.fakes.to("fcm:good")) == 1 and len(p.fakes.to("webhook")) == 1
        [entry] = await p.pending(who)
        assert entry["attempts"] == 1
        p.fakes.tokens["cc33"] = "ok"
        await eventually(lambda: p.drain(), lambda n: n > 0, timeout=5, what="the retry")
        assert len(p.fakes.to("apns:cc33")) == 1
        assert len(p.fakes.to("fcm:good")) == 1 and len(p.fakes.to("webhook")) == 1
        assert await p.pending(who) == []


async def test_invalid_tokens_are_removed(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = profile()
        await p.register(who, "fcm", "old-fcm")
        await p.register(who, "apns", "dd44")
        await p.register(who, "fcm", "live")
        p.fakes.tokens.update({"old-fcm": "gone", "dd44": "gone"})
        await p.s2s.send([who])
        await p.drain()
        devices = (await p.s2s.ok("push", "GET_DEVICES", {"profileId": who}))["devices"]
        assert [d["token"] for d in devices] == ["live"]
        assert len(p.fakes.to("fcm:live")) == 1
        assert await p.pending(who) == []  # a gone token is not a failure to retry
        assert p.dispatcher.counters.gone == 2


async def test_a_burst_buzzes_once_or_twice_with_a_count(tmp_path: Path) -> None:
    async with pushing(tmp_path, collapse_seconds=1.0) as p:
        who = profile()
        await p.register(who, "fcm", "burst")
        await p.s2s.send([who], {"text": "first"})
        await p.drain()
        for i in range(49):
            await p.s2s.send([who], {"text": f"n{i}"})
        await p.drain()  # within the rate: deferred, not sent
        assert len(p.fakes.to("fcm:burst")) == 1
        await eventually(
            lambda: p.drain(), lambda n: n > 0, timeout=5, interval=0.05, what="deferred burst"
        )
        buzzes = p.fakes.to("fcm:burst")
        assert len(buzzes) == 2
        assert buzzes[1]["data"]["count"] == "49" and buzzes[1]["notification"]["body"] == "n48"
        assert len(p.fakes.to("webhook")) == 2 and p.fakes.to("webhook")[1]["count"] == 49
        assert await p.pending(who) == []


async def test_the_node_dispatches_by_itself(tmp_path: Path) -> None:
    async with pushing(tmp_path, dispatcher=True) as p:
        who = profile()
        await p.register(who, "apns", "ee55")
        await p.s2s.send([who])
        await eventually(lambda: asyncio.sleep(0, p.fakes.to("apns:ee55")), timeout=TIMEOUT)
        await eventually(lambda: p.pending(who), lambda items: items == [], what="settled")


async def test_dispatchers_draining_together_never_share_an_entry(tmp_path: Path) -> None:
    async with pushing(tmp_path) as p:
        who = [profile() for _ in range(300)]
        for i in range(0, 300, 100):
            await p.s2s.send(who[i : i + 100])
        settings, engine = p.dispatcher.settings, p.server.node.engine
        small = settings.model_copy(update={"push_batch": 16})
        others = [Dispatcher(small, engine, p.dispatcher.providers) for _ in range(3)]

        async def drain(d: Dispatcher) -> None:
            while await d.drain_once():
                pass

        await asyncio.gather(*(drain(d) for d in others))
        hooks = [h["profileId"] for h in p.fakes.to("webhook")]
        assert sorted(hooks) == sorted(who)  # every one once, none twice
        assert all(d.counters.claimed > 0 for d in others)


async def test_a_slow_delivery_keeps_its_lease(tmp_path: Path) -> None:
    """A dispatcher still waiting on a provider renews its lease: another dispatcher does not
    take the entry over (and notify again) however long the wait, only after a crash."""
    async with pushing(tmp_path) as p:
        who = profile()
        await p.register(who, "apns", "ff66")
        p.fakes.tokens["ff66"] = "hold"
        await p.s2s.send([who])
        short = p.dispatcher.settings.model_copy(update={"push_lease_seconds": 0.6})
        first = Dispatcher(short, p.server.node.engine, p.dispatcher.providers)
        second = Dispatcher(short, p.server.node.engine, p.dispatcher.providers)
        slow = asyncio.create_task(first.drain_once())
        await eventually(lambda: asyncio.sleep(0, p.fakes.held), timeout=TIMEOUT)
        for _ in range(15):  # 1.5 s: two and a half leases
            assert await second.drain_once() == 0
            await asyncio.sleep(0.1)
        p.fakes.tokens["ff66"] = "ok"
        p.fakes.release.set()
        assert await asyncio.wait_for(slow, TIMEOUT) == 1
        assert sorted(d for d, _ in p.fakes.attempts) == ["apns:ff66", "webhook"]
