"""Deeply nested JSON on the socket (issue 8): a documented 400/40001 reply, never a close."""

from __future__ import annotations

import pytest

from tests.integration.test_socket_messaging import counts
from tests.integration.test_socket_protocol import assert_disconnect, refused
from tests.support.clients import socket, token


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", ["requestId", "service", "data"])
@pytest.mark.parametrize("depth", [65, 300, 1020])
async def test_deep_request_is_a_40001_reply_and_the_socket_lives(server, where, depth):
    """Pins: a 300-deep `requestId` or `service` closed the socket with 1011 and a traceback
    (the reply could not be encoded: orjson encodes at most 254 levels)."""
    fields = {
        "service": '"messaging"',
        "operation": '"GET_MESSAGE_COUNTS"',
        "requestId": "1",
        "data": "{}",
    }
    fields[where] = nested(depth)
    frame = "{" + ",".join(f'"{k}":{v}' for k, v in fields.items()) + "}"
    async with socket(server, "p1") as client:
        await client.send(frame)
        reply = await client.recv()
        assert reply["status"] == 400 and reply["reason_code"] == 40001, reply
        assert "deeper" in reply["status_message"], reply
        assert (await counts(client))["inbox"]["total"] == 0  # still served


async def test_deep_content_from_a_client_is_refused_and_stores_nothing(server):
    """Pins: contentJson nested 255+ levels reached the content encoder and failed there."""
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        frame = (
            '{"service":"messaging","operation":"SEND_MESSAGE","requestId":7,'
            '"data":{"toProfileIds":["p2"],"contentJson":{"a":' + nested(300) + "}}}"
        )
        await p1.send(frame)
        reply = await p1.recv()
        assert reply["status"] == 400 and reply["reason_code"] == 40001, reply
        assert (await counts(p1))["sent"]["total"] == 0
        assert (await counts(p2))["inbox"]["total"] == 0


async def test_the_depth_limit_is_the_setting(server):
    """Nesting up to RTT_MAX_JSON_DEPTH (64 here) is accepted: the limit is not stricter."""
    inner = nested(60)
    async with socket(server, "p1") as p1, socket(server, "p2") as p2:
        data = {"toProfileIds": ["p2"], "contentJson": {"deep": "X"}}
        frame = (
            '{"service":"messaging","operation":"SEND_MESSAGE","requestId":1,"data":'
            + str(data).replace("'", '"').replace('"X"', inner)
            + "}"
        )
        await p1.send(frame)
        reply = await p1.recv()
        assert reply["status"] == 200, reply
        [pushed] = await p2.pushed(1)
        assert pushed["data"]["message"]["content"]["deep"] is not None


async def test_deep_connect_is_a_protocol_refusal(server):
    """A CONNECT nested too deep is refused like any malformed CONNECT (4000), not a 1011."""
    frame = '{"service":"rtt","operation":"CONNECT","data":{"auth":' + nested(300) + "}}"
    frames, code = await refused(server, frame, query_token=token("p1"))
    assert_disconnect(frames, 40001)
    assert code == 4000
