"""SYS_DELETE_MESSAGES racing updates of the same messages (API.md §2, §6)."""

from __future__ import annotations

import asyncio
import contextlib

from tests.support.clients import S2S

MESSAGES = 10
UPDATERS = 6  # concurrent SYS_UPDATE_MESSAGE loops per message


async def test_bulk_delete_racing_updates_answers_in_shape_never_a_plain_500(s2s: S2S) -> None:
    """Pins: a second VersionMismatch in SYS_DELETE_MESSAGES (the message updated again between
    its re-read and the delete) escaped as a plain-text 500. Now every outcome is a brainCloud
    answer: the messages deleted, or 400/40598 once LATEST_ATTEMPTS re-reads all lost."""
    ids = [await s2s.send(["p1"], {"n": n}) for n in range(MESSAGES)]
    stop = asyncio.Event()

    async def update(msg_id: str) -> None:
        data = {"msgId": msg_id, "msgVer": -1, "contentJson": {"v": 1}}
        while not stop.is_set():
            await s2s.call("messaging", "SYS_UPDATE_MESSAGE", data)

    updaters = [asyncio.create_task(update(m)) for m in ids for _ in range(UPDATERS)]
    try:
        await asyncio.sleep(0.05)
        for _ in range(3):
            status, body = await s2s.call("messaging", "SYS_DELETE_MESSAGES", {"msgIds": ids})
            assert set(body) <= {"status", "data", "reason_code", "status_message", "severity"}
            assert (status, body["status"]) in ((200, 200), (400, 400)), body
            if status == 400:
                assert body["reason_code"] == 40598, body
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*updaters, return_exceptions=True)
