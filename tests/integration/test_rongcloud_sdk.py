"""RongCloud's official Python server SDK (rc-server-sdk 3.2, unmodified) against rtt, as a
backend migrating from RongCloud would call it: second timestamps, a form body built from a
string template (pushContent not escaped), `disablePush=True` written as Python's `True`."""

from __future__ import annotations

import asyncio
import uuid

from rongcloud.rongcloud import RongCloud

from tests.support.clients import S2S, socket

APP_KEY, APP_SECRET = "demo-key", "rc-secret"  # tests/support/server.APPS_TOML


def _profile(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def _system_send(server, *args, **kwargs):
    """The SDK is blocking (urllib): it runs in a thread while this loop serves it."""
    rc = RongCloud(APP_KEY, APP_SECRET, host_url=server.url)
    system = rc.get_message().get_system()
    return await asyncio.wait_for(asyncio.to_thread(system.send, *args, **kwargs), 15)


async def test_sdk_system_send_answers_code_200_and_reaches_online_and_offline(server, s2s: S2S):
    online, offline = _profile("on"), _profile("off")
    async with socket(server, online) as client:
        answer = await _system_send(
            server,
            "sys-admin",
            [online, offline],
            "RC:TxtMsg",
            {"content": "hello from the SDK"},
            push_content="new notice",
            push_data="k=v",
        )
        assert answer == {"code": 200}
        [frame] = await client.pushed(1)
    data = frame["data"]
    assert (frame["service"], frame["operation"]) == ("system", "INCOMING")
    assert data["targetId"] == "sys-admin" and data["messageType"] == "RC:TxtMsg"
    assert data["content"] == '{"content": "hello from the SDK"}'  # json.dumps, as the SDK sent it
    assert data["pushContent"] == "new notice"
    pending = await s2s.ok("push", "SYS_GET_PENDING", {"profileId": offline})
    [push] = pending["items"]
    assert push["body"] == "new notice" and push["data"]["pushData"] == "k=v"


async def test_sdk_disable_push_true_and_is_persisted_0(server, s2s: S2S):
    online, offline = _profile("on"), _profile("off")
    async with socket(server, online) as client:
        answer = await _system_send(
            server,
            "sys-admin",
            [online, offline],
            "App:Ping",
            {"n": 1},
            push_content="never shown",
            is_persisted=0,
            disable_push=True,
        )
        assert answer == {"code": 200}
        frame = await client.recv()
        assert frame["operation"] == "INCOMING" and "seq" not in frame
        counts = await client.ok("messaging", "GET_MESSAGE_COUNTS", {})
    assert counts["inbox"]["total"] == 0
    pending = await s2s.ok("push", "SYS_GET_PENDING", {"profileId": offline})
    assert pending["items"] == []


async def test_sdk_push_content_with_a_form_separator_arrives_cut_where_the_sdk_broke_it(
    server, s2s: S2S
):
    """The SDK does not escape pushContent: `a&b` reaches any server as pushContent=`a` plus a
    stray field `b`. rtt ignores the stray field and sends, as RongCloud would."""
    offline = _profile("off")
    answer = await _system_send(
        server, "sys-admin", [offline], "RC:TxtMsg", {"content": "x"}, push_content="a&b"
    )
    assert answer == {"code": 200}
    pending = await s2s.ok("push", "SYS_GET_PENDING", {"profileId": offline})
    assert [p["body"] for p in pending["items"]] == ["a"]


async def test_sdk_with_the_wrong_secret_gets_401_1004(server):
    rc = RongCloud(APP_KEY, "not-the-secret", host_url=server.url)
    system = rc.get_message().get_system()
    raw = await asyncio.wait_for(
        asyncio.to_thread(system.send, "sys-admin", ["p"], "RC:TxtMsg", {"content": "x"}), 15
    )
    assert b'"code":1004' in raw  # on an HTTP error the SDK hands back the raw body
