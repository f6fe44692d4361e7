"""The basic promise: an S2S send is stored, then pushed to a connected recipient."""

from tests.support.clients import socket


async def test_send_reaches_connected_socket(server, s2s):
    async with socket(server, "p1") as client:
        msg_id = await s2s.send(["p1", "p2"], {"text": "hi"})
        [frame] = await client.pushed(1)
        assert frame["service"] == "messaging" and frame["operation"] == "INCOMING"
        assert frame["seq"] == 1
        assert frame["data"]["msgId"] == msg_id
        assert frame["data"]["message"]["content"] == {"text": "hi"}
        assert frame["data"]["message"]["from"] == {"id": None, "name": "App Administrator"}
