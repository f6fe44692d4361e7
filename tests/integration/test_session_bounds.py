"""A session's own state is bounded: live frames held during a slow replay stay under
RTT_SESSION_PENDING_BYTES, and what is dropped past it is read back from the store."""

from __future__ import annotations

import asyncio

from tests.support.clients import S2S
from tests.support.server import running
from tests.support.server import test_settings as settings_for
from tests.support.stalled import held_bytes, read_all, session_of, stalled_replay

CAP = 32 * 1024
BACKLOG = 120  # 120 x 50 KB: more than the kernel buffers (up to 4 MB) of a stalled client
LIVE = 40  # 40 x 5 KB sent while the replay is stalled: several times the cap


async def test_pending_frames_during_a_stalled_replay_stay_under_the_cap_and_none_is_lost(
    tmp_path,
):
    """Pins: a session's `_pending` list grew without bound while its replay waited for a slow
    client (every live frame was appended); at the cap they are dropped and read back from the
    store, and the client still gets every seq once, in order."""
    async with running(settings_for(tmp_path, session_pending_bytes=CAP)) as server:
        s2s = S2S(server)
        try:
            backlog = [await s2s.send(["slow"], {"pad": "b" * 50_000}) for _ in range(BACKLOG)]
            raw = await stalled_replay(server, "slow", since=0)
            session = session_of(server, "slow")
            peak = 0
            live = []
            for i in range(LIVE):
                live.append(await s2s.send(["slow"], {"pad": "l" * 5_000, "i": i}))
                peak = max(peak, held_bytes(session))
            await asyncio.sleep(0.2)  # the last fan-outs reach the session
            peak = max(peak, held_bytes(session))
            assert not session._live, "the replay should still be waiting for the client"
            assert peak <= CAP, peak

            frames = await read_all(raw, BACKLOG + LIVE)
            raw.close()
        finally:
            await s2s.close()
    stream = [(f["seq"], f["data"]["msgId"]) for f in frames if "seq" in f]
    assert stream == list(enumerate(backlog + live, start=1))
