"""The RTT socket client: one profile's connection that stays up by itself (API.md §4).

It does what every app would otherwise hand-roll: CONNECT with a token (or a callable that
returns a fresh one for each connection), a heartbeat every `heartbeatSeconds`, requests
matched to their replies by `requestId`, and after any loss a reconnect with full-jitter
exponential backoff that resumes with `since` (the last seq handed out) and `epoch`, trying
each URL in turn. The stream it yields is gap-free and duplicate-free: a frame at or below the
last seq is dropped, a frame past the next one means the connection missed something, so it
reconnects and lets the server replay; both are counted in `stats`. A server that lost the
stream says RESYNC, which is yielded as `Resync` so the app re-reads its inbox.

Frames wait in a queue of at most `queue_size`; while it is full the client stops reading
the socket, so a slow consumer slows the connection (and the server may close it as too slow,
after which the client resumes) instead of growing memory.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from rtt.client.frames import (
    Connected,
    ConnectionLost,
    Disconnected,
    Frame,
    Live,
    Pushed,
    Refused,
    RequestError,
    Resync,
)
from rtt.protocol import dumps, loads

TokenSource = str | Callable[[], str | Awaitable[str]]

BAD_AUTH = 40304  # API.md §6: a fresh token may fix it
FEATURE_NOT_ENABLED = 40601  # rtt is off for the app: no retry will help
HEARTBEAT = dumps({"service": "rtt", "operation": "HEARTBEAT", "data": None}).decode()


@dataclass
class Stats:
    """What the client did on its own, for logs and tests."""

    connects: int = 0
    failed_attempts: int = 0  # connections that failed before CONNECT was answered
    duplicates: int = 0  # stream frames dropped: their seq was at or below the last one
    gaps: int = 0  # stream frames past the next seq: the connection was restarted to replay
    resyncs: int = 0


class _Attempt(Exception):
    """One connection attempt failed; `refused` is the DISCONNECT data if the server said no."""

    def __init__(self, why: str, refused: dict[str, Any] | None = None) -> None:
        super().__init__(why)
        self.refused = refused


class Client:
    """One profile's RTT connection; see the module docstring. Use as

        async with Client("ws://127.0.0.1:8080/rtt", token) as client:
            async for frame in client: ...

    or `start()` / `close()` by hand. `since` resumes a stream the app already read up to that
    seq (with the `epoch` it was read in); without it the stream starts at the latest seq.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        token: TokenSource,
        *,
        since: int | None = None,
        epoch: str | None = None,
        queue_size: int = 1024,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        connect_timeout: float = 10.0,
        max_size: int = 4 * 1024 * 1024,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("give at least one URL")
        self.last_seq = since
        self.epoch = epoch
        self.stats = Stats()
        self.url: str | None = None  # the URL of the live connection, if any
        self._token = token
        self._queue_size = queue_size
        self._backoff = (backoff_base, backoff_cap)
        self._connect_timeout = connect_timeout
        self._max_size = max_size
        self._index = 0
        self._ws: ClientConnection | None = None
        self._up = asyncio.Event()
        self._first: asyncio.Future[Connected] | None = None
        self._frames: deque[Frame] = deque()
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._finished = False
        self._error: BaseException | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background (and keep reconnecting until `close()`)."""
        if self._task is None:
            self._first = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run())

    async def connected(self, timeout: float | None = None) -> Connected:
        """Wait for the first connection; raises `Refused` if the server refused it."""
        self.start()
        assert self._first is not None
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._first)

    async def close(self) -> None:
        """Disconnect for good; the iteration ends after the frames already queued."""
        self._closing = True
        self._writable.set()
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._task is not None:
            try:
                async with asyncio.timeout(self._connect_timeout):
                    await asyncio.shield(self._task)
            except TimeoutError:
                self._task.cancel()
            except Exception:  # the task's own error was already handed to the iteration
                pass

    async def __aenter__(self) -> Client:
        await self.connected(self._connect_timeout)
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    # --- what the app reads and asks ---------------------------------------------------------

    def __aiter__(self) -> Client:
        return self

    async def __anext__(self) -> Frame:
        frames = self._frames
        while not frames:
            if self._finished:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._readable.clear()
            await self._readable.wait()
        frame = frames.popleft()
        if len(frames) < self._queue_size:
            self._writable.set()
        return frame

    async def request(
        self, service: str, operation: str, data: Any = None, *, timeout: float = 10.0
    ) -> Any:
        """Send a request once connected and return its reply's `data`; raises `RequestError`
        for an error reply, `ConnectionLost` if the connection ended first (it may have run:
        requests are never re-sent behind the caller's back), TimeoutError after `timeout`."""
        async with asyncio.timeout(timeout):
            await self._up.wait()
            ws = self._ws
            assert ws is not None
            request_id = next(self._ids)
            answer = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = answer
            try:
                frame = {"service": service, "operation": operation, "data": data}
                await ws.send(dumps({**frame, "requestId": request_id}).decode())
                reply = await answer
            except ConnectionClosed as e:
                raise ConnectionLost("the connection closed before the reply") from e
            finally:
                self._waiting.pop(request_id, None)
        if reply.get("status") != 200:
            raise RequestError(reply)
        return reply.get("data")

    # --- the connection loop -----------------------------------------------------------------

    def _delay(self, attempt: int) -> float:
        """Full jitter: uniform up to base * 2**attempt (capped), so a storm spreads out."""
        base, cap = self._backoff
        return random.uniform(0.0, min(cap, base * 2**attempt))

    def _next_url(self) -> None:
        self._index = (self._index + 1) % len(self.urls)

    async def _run(self) -> None:
        attempt = 0
        refusals = 0
        try:
            while not self._closing:
                url = self.urls[self._index]
                try:
                    ws, hello = await self._open(url)
                except _Attempt as failed:
                    self.stats.failed_attempts += 1
                    refusals = self._check_refusal(failed.refused, refusals)
                    self._next_url()
                    await asyncio.sleep(self._delay(attempt))
                    attempt += 1
                    continue
                attempt = refusals = 0
                ended = await self._serve(url, ws, hello)
                if not self._closing and (ended.disconnect or {}).get("reasonCode") == 50302:
                    self._next_url()  # that node is going away
                await self._put(ended)
                if not self._closing:
                    await asyncio.sleep(self._delay(0))
        except Refused as e:
            self._error = e
            self._fail_first(e)
        finally:
            self._finished = True
            self._readable.set()
            self._fail_first(ConnectionLost("closed before it connected"))

    def _fail_first(self, error: Exception) -> None:
        """`connected()` raises `error`; nobody needs to be waiting for it."""
        first = self._first
        if first is not None and not first.done():
            first.set_exception(error)
            first.exception()  # retrieved: no "never retrieved" warning when nobody waits

    def _check_refusal(self, refused: dict[str, Any] | None, refusals: int) -> int:
        """Raise `Refused` when no retry can help; return the count of auth refusals in a row."""
        if refused is None:
            return 0
        code = refused.get("reasonCode")
        reason = str(refused.get("reason"))
        if code == FEATURE_NOT_ENABLED:
            raise Refused(reason, code)
        if code == BAD_AUTH:
            if isinstance(self._token, str) or refusals >= 1:  # a fresh token did not help
                raise Refused(reason, code)
            return refusals + 1
        return 0

    async def _open(self, url: str) -> tuple[ClientConnection, dict[str, Any]]:
        """Upgrade, CONNECT (with since/epoch once the client has a position) and read the
        answer, within `connect_timeout`; raises `_Attempt` on any failure."""
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(self._connect_timeout):
                token = self._token if isinstance(self._token, str) else self._token()
                if not isinstance(token, str):
                    token = await token
                ws = await connect(
                    url, max_size=self._max_size, ping_interval=None, compression=None
                )
                data: dict[str, Any] = {"auth": {"token": token}}
                if self.last_seq is not None:
                    data["since"] = self.last_seq
                    if self.epoch is not None:
                        data["epoch"] = self.epoch
                connect_frame = {"service": "rtt", "operation": "CONNECT", "data": data}
                await ws.send(dumps(connect_frame).decode())
                reply = loads(await ws.recv())
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, ValueError) as e:
            if ws is not None:
                ws.transport.abort()
            if isinstance(e, InvalidURI):
                raise Refused(f"bad URL {url!r}", None) from e
            raise _Attempt(f"{type(e).__name__}: {e}") from e
        operation = reply.get("operation") if isinstance(reply, dict) else None
        if operation != "CONNECT":
            await ws.close()
            refused = reply.get("data") if operation == "DISCONNECT" else None
            raise _Attempt(f"CONNECT answered {reply!r}", refused or None)
        return ws, reply["data"]

    async def _serve(self, url: str, ws: ClientConnection, hello: dict[str, Any]) -> Disconnected:
        """Run one connection from its CONNECT reply to its end: read frames, beat the heart,
        and end it early on silence or on a gap in the stream."""
        connected = Connected(
            url,
            str(hello.get("cxId")),
            int(hello.get("seq") or 0),
            hello.get("epoch"),
            float(hello.get("heartbeatSeconds") or 30.0),
            self.last_seq is not None,
        )
        self.epoch = connected.epoch
        if self.last_seq is None:
            self.last_seq = connected.seq  # the server goes live right after this seq
        self.stats.connects += 1
        self.url, self._ws = url, ws
        self._up.set()
        if self._first is not None and not self._first.done():
            self._first.set_result(connected)
        await self._put(connected)
        disconnect: dict[str, Any] | None = None
        reason = ""
        beat = connected.heartbeat_seconds
        loop = asyncio.get_running_loop()
        heard = loop.time()
        next_beat = heard + beat
        try:
            while True:
                try:
                    async with asyncio.timeout_at(next_beat):
                        raw = await ws.recv()
                except TimeoutError:
                    if loop.time() - heard >= 2 * beat:
                        ws.transport.abort()  # a silent peer would not answer a close either
                        return Disconnected(url, None, "the server was silent", disconnect)
                    await ws.send(HEARTBEAT)
                    next_beat = loop.time() + beat
                    continue
                heard = loop.time()
                frame = loads(raw)
                if frame.get("service") == "rtt" and frame.get("operation") == "DISCONNECT":
                    disconnect = frame.get("data")
                elif not await self._take(frame):
                    reason = "a gap in the stream: resuming to replay it"
                    break
        except ConnectionClosed:
            pass
        finally:
            self._up.clear()
            self._ws = self.url = None
            for waiting in self._waiting.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionLost("the connection closed"))
        if reason:
            await ws.close(1000, reason)
        received = ws.protocol.close_rcvd
        return Disconnected(
            url,
            received.code if received is not None else None,
            reason or (received.reason if received is not None else ""),
            disconnect,
        )

    async def _take(self, frame: dict[str, Any]) -> bool:
        """Queue what the app should see; False on a gap (the connection must resume)."""
        seq = frame.get("seq")
        if isinstance(seq, int):
            last = self.last_seq or 0
            if seq <= last:
                self.stats.duplicates += 1
                return True
            if seq != last + 1:
                self.stats.gaps += 1
                return False
            self.last_seq = seq
            await self._put(Pushed(seq, frame["service"], frame["operation"], frame.get("data")))
            return True
        request_id = frame.get("requestId")
        if request_id is not None:
            waiting = self._waiting.get(request_id)
            if waiting is not None and not waiting.done():
                waiting.set_result(frame)
            return True
        service, operation, data = frame.get("service"), frame.get("operation"), frame.get("data")
        if service == "rtt":
            if operation == "RESYNC":
                resync_seq = data.get("seq") if isinstance(data, dict) else None
                if isinstance(resync_seq, int):
                    self.last_seq = resync_seq
                self.epoch = None  # the stream changed: the next CONNECT learns the new epoch
                self.stats.resyncs += 1
                await self._put(Resync(self.last_seq or 0))
            return True  # HEARTBEAT replies
        await self._put(Live(str(service), str(operation), data))
        return True

    async def _put(self, frame: Frame) -> None:
        """Queue `frame` for the app, waiting (not reading the socket) while the queue is full."""
        while len(self._frames) >= self._queue_size and not self._closing:
            self._writable.clear()
            await self._writable.wait()
        self._frames.append(frame)
        self._readable.set()
