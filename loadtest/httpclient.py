"""A minimal HTTP/1.1 keep-alive client for the fan-out benchmark's sends.

httpx spends 1.5-3 ms of CPU per request on this machine (httpcore also retries a failing
`import sniffio` on every request when sniffio is not installed); at 100 sends/s that is a
fifth of the generator's only core, taken from counting frames. The sends are small POSTs to
loopback servers that answer with a Content-Length, so a few keep-alive connections, each a
StreamReader/StreamWriter pair, do the job for tens of µs per request.
"""

from __future__ import annotations

import asyncio


class HTTPError(Exception):
    """The server answered with an error status (or a response this client does not read)."""


def parse_head(head: bytes) -> tuple[int, int, bool]:
    """Status, body length and whether the connection stays open, from a response head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HTTPError(f"not an HTTP/1.x response: {status_line!r:.200}")
    status = int(parts[1])
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "transfer-encoding" in headers:
        raise HTTPError(f"unsupported Transfer-Encoding {headers['transfer-encoding']!r}")
    if "content-length" not in headers and status not in (204, 304):
        raise HTTPError("a response without Content-Length")
    keep = headers.get("connection") != "close" and parts[0] != "HTTP/1.0"
    return status, int(headers.get("content-length", "0")), keep


class HttpClient:
    """POSTs to one `host:port`, over as many keep-alive connections as requests in flight."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, path: str, body: bytes) -> bytes:
        """POST a JSON `body`; the response body, or HTTPError for a status of 400 and up."""
        request = (
            b"POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s"
            % (path.encode(), self.host.encode(), self.port, len(body), body)
        )
        async with asyncio.timeout(self.timeout):
            while self._idle:
                connection = self._idle.pop()
                try:
                    status, content = await self._exchange(*connection, request)
                    break
                except asyncio.IncompleteReadError as e:
                    if e.partial:
                        raise
                    # no byte of an answer: the server had closed this idle connection
            else:
                connection = await asyncio.open_connection(self.host, self.port)
                status, content = await self._exchange(*connection, request)
        if status >= 400:
            raise HTTPError(f"POST {path}: {status} {content[:200]!r}")
        return content

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> tuple[int, bytes]:
        """One request and its response; the connection goes back to the idle ones if kept."""
        try:
            writer.write(request)
            status, length, keep = parse_head(await reader.readuntil(b"\r\n\r\n"))
            content = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status, content

    def close(self) -> None:
        """Close the idle connections (a request still in flight closes its own)."""
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
