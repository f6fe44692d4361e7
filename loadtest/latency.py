"""Publish→receive latency: S2S send to the frame arriving on a connected socket.

    python -m loadtest.latency --sends 100

Starts its own node, connects one socket, sends one system message at a time (each carrying
its send timestamp) and reports p50/p90/p99 and the maximum, as JSON and a table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

import httpx
import jwt
import orjson
import websockets

from loadtest.node import APP, SECRET, SERVER_SECRET, rtt_node


async def measure(http_url: str, ws_url: str, sends: int, timeout: float) -> list[float]:
    """Milliseconds from just before each S2S request to its frame on the socket."""
    token = jwt.encode({"sub": "lat-1", "app": APP, "exp": int(time.time()) + 600}, SECRET, "HS256")
    samples: list[float] = []
    async with (
        httpx.AsyncClient(base_url=http_url, timeout=timeout) as http,
        websockets.connect(f"{ws_url}?token={token}") as ws,
    ):
        connect = {"service": "rtt", "operation": "CONNECT", "data": {}}
        await ws.send(orjson.dumps(connect).decode())
        await asyncio.wait_for(ws.recv(), timeout)
        for i in range(sends):
            started = time.perf_counter()
            body = {
                "appId": APP,
                "serverName": "backend",
                "serverSecret": SERVER_SECRET,
                "service": "messaging",
                "operation": "SYS_SEND_MESSAGE",
                "data": {
                    "toProfileIds": ["lat-1"],
                    "contentJson": {"i": i},
                    "fromJson": {"id": None, "name": "bench"},
                },
            }
            reply = http.post("/s2sdispatcher", content=orjson.dumps(body))
            frame_task = asyncio.ensure_future(asyncio.wait_for(ws.recv(), timeout))
            response, frame = await asyncio.gather(reply, frame_task)
            received = time.perf_counter()
            assert response.status_code == 200, response.text
            assert orjson.loads(frame)["data"]["message"]["content"] == {"i": i}
            samples.append((received - started) * 1000)
    return samples


def report(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 3)

    return {
        "sends": len(samples),
        "p50_ms": round(statistics.median(ordered), 3),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": round(ordered[-1], 3),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sends", type=int, default=100, help="sequential sends (≤ 100000)")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-send bound, seconds")
    args = parser.parse_args(argv)
    sends = max(1, min(args.sends, 100_000))
    with rtt_node() as node:
        samples = asyncio.run(measure(node.http, node.ws, sends, args.timeout))
    result = report(samples)
    print(orjson.dumps(result).decode())
    for key, value in result.items():
        print(f"  {key:>8} {value}", file=sys.stderr)


if __name__ == "__main__":
    main()
