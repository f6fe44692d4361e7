"""A loopback TCP proxy in front of Redis that can make only the pub/sub connections go deaf.

A connection is marked pub/sub once its client→server bytes contain `SUBSCRIBE`. While frozen,
bytes on marked connections are held in both directions (nothing is dropped and the TCP
connections stay open: to the node it looks exactly like a silent network path); `thaw()`
releases them. Other connections (commands, publishes) keep flowing throughout.
`cut_on(marker)` instead closes, both ways, any connection the moment it carries `marker`
(e.g. b"PUBLISH"), so that one command fails with a dropped connection while others succeed.
`hold_next()` holds the next command sent on any connection until `release()`: that command
reaches Redis after whatever others send meanwhile on other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

CHUNK = 65536


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pubsub: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class TcpProxy:
    """`async with TcpProxy(port) as proxy:` → Redis at `proxy.url` (127.0.0.1:`proxy.port`)."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._thawed = asyncio.Event()
        self._thawed.set()
        self._cut_marker: bytes | None = None
        self._hold_armed = False
        self.holding = asyncio.Event()  # set once hold_next() has caught a command
        self._released = asyncio.Event()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pubsub_connections(self) -> int:
        return sum(1 for link in self._links if link.pubsub)

    def freeze_pubsub(self) -> None:
        """From now on, hold every byte on pub/sub connections, both ways."""
        self._thawed.clear()

    def thaw(self) -> None:
        """Release what was held and forward normally again."""
        self._thawed.set()

    def cut_on(self, marker: bytes | None) -> None:
        """Drop any connection whose client→server bytes contain `marker` (None: stop)."""
        self._cut_marker = marker

    def hold_next(self) -> None:
        """Hold the next client→server bytes of any connection until `release()`."""
        self.holding.clear()
        self._released.clear()
        self._hold_armed = True

    def release(self) -> None:
        """Let the held command through."""
        self._released.set()

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        self._thawed.set()
        self._released.set()
        if self._server is not None:
            self._server.close()
        tasks = [t for link in list(self._links) for t in link.tasks]
        for link in list(self._links):
            self._drop(link)
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.upstream_host, self.upstream_port), 2.0
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        link = _Link(writer, up_writer)
        self._links.add(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, to_server=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, to_server=False)),
        ]

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_server: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                if to_server and b"SUBSCRIBE" in data.upper():
                    link.pubsub = True
                if to_server and self._cut_marker and self._cut_marker in data.upper():
                    break
                while link.pubsub and not self._thawed.is_set():
                    await self._thawed.wait()
                if to_server and self._hold_armed and not link.pubsub:
                    self._hold_armed = False
                    self.holding.set()
                    await self._released.wait()
                writer.write(data)
                await writer.drain()
        except Exception:  # a reset or a write to a closed transport: the link is over
            pass
        finally:
            self._drop(link)

    def _drop(self, link: _Link) -> None:
        """Either side ended: close both, so the other pump ends too."""
        for w in (link.client, link.upstream):
            with contextlib.suppress(Exception):
                w.close()
        self._links.discard(link)
