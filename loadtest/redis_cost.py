"""Redis's CPU per delivery of a send, against the least a per-profile stream can cost there.

    python -m loadtest.redis_cost --profiles 5000 --recipients 1000 --sends 100

Sends system messages through the redis engine's own store (`RedisStore.append_message`: the
message, its indexes, the frame, and per recipient a seq, a stream entry and an inbox entry,
all checked before anything is written), then the same recipients through a floor: one Lua
call per send doing one ZADD per recipient (the one write a per-profile stream cannot do
without). Both on a fresh redis-server of their own on the first CPU; the figure is Redis's own
CPU (INFO) per recipient, so the client's speed does not enter it. One JSON object on stdout.
Bounded: at most 100 000 profiles, 10 000 recipients and 1 000 sends; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid

import orjson
import redis

from loadtest.fanout import own_redis, redis_cpu_seconds
from loadtest.node import pin
from rtt.domain.messages import new_message
from rtt.engines.redis import redis_engine
from rtt.engines.redis.keys import stream
from rtt.protocol import SLOT, json_strings, slotted_frame

APP = "bench"
SENDER = {"id": None, "name": "System"}
FRAME = slotted_frame("messaging", "INCOMING", {"to": SLOT, "pad": "x" * 100})
FLOOR = """
for i = 1, #KEYS do
  redis.call("ZADD", KEYS[i], ARGV[1], ARGV[2] .. i)
end
"""


def recipients(rng: random.Random, profiles: int, count: int) -> list[str]:
    return [f"p{i}" for i in rng.sample(range(profiles), count)]


async def store_cost(url: str, profiles: int, count: int, sends: int) -> float:
    """µs of Redis CPU per recipient of `sends` sends through the engine's store."""
    engine = redis_engine(
        url, timeout=30.0, probe_interval=1.0, presence_ttl=10.0,
        stream_max_items=1000, stream_max_seconds=3600,
    )  # fmt: skip
    await engine.store.start()
    rng = random.Random(1)
    db = redis.Redis.from_url(url)
    try:
        before = redis_cpu_seconds([db])
        for _ in range(sends):
            to = recipients(rng, profiles, count)
            message = new_message(SENDER, to, b'{"text":"hi"}', int(time.time() * 1000))
            await engine.store.append_message(APP, message, to, None, FRAME, json_strings(to), [])
        return (redis_cpu_seconds([db]) - before) / (sends * count) * 1e6
    finally:
        db.close()
        await engine.close()


def floor_cost(url: str, profiles: int, count: int, sends: int) -> float:
    """µs of Redis CPU per recipient of one ZADD per recipient, one call per send."""
    rng = random.Random(1)
    with redis.Redis.from_url(url) as db:
        floor = db.register_script(FLOOR)
        before = redis_cpu_seconds([db])
        for n in range(sends):
            keys = [stream(APP, p) for p in recipients(rng, profiles, count)]
            floor(keys=keys, args=[n, uuid.uuid4().hex])
        return (redis_cpu_seconds([db]) - before) / (sends * count) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=5000)
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--sends", type=int, default=100)
    args = parser.parse_args()
    profiles = min(max(args.profiles, 1), 100_000)
    count = min(max(args.recipients, 1), 10_000, profiles)
    sends = min(max(args.sends, 1), 1000)
    if (os.cpu_count() or 1) > 1:
        pin(os.getpid(), {1})  # Redis on the first CPU, this client on the second
    with own_redis({0}) as url:
        rtt = asyncio.run(store_cost(url, profiles, count, sends))
    with own_redis({0}) as url:
        floor = floor_cost(url, profiles, count, sends)
    report = {
        "profiles": profiles, "recipients": count, "sends": sends,
        "redis_cpu_us_per_delivery": {"rtt": round(rtt, 2), "floor_one_zadd": round(floor, 2)},
        "rtt_over_floor": round(rtt / floor, 2) if floor else None,
    }  # fmt: skip
    print(orjson.dumps(report).decode())


if __name__ == "__main__":
    main()
