"""A Python client for rtt's RTT socket: `async for frame in Client(url, token)`.

    from rtt.client import Client, Pushed

    async with Client("ws://127.0.0.1:8080/rtt", token) as client:
        async for frame in client:
            if isinstance(frame, Pushed):
                print(frame.seq, frame.data)

It reconnects and resumes by itself; see `rtt.client.client` for what it guarantees.
"""

from rtt.client.client import Client, Stats, TokenSource
from rtt.client.frames import (
    ClientError,
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

__all__ = [
    "Client",
    "ClientError",
    "Connected",
    "ConnectionLost",
    "Disconnected",
    "Frame",
    "Live",
    "Pushed",
    "Refused",
    "RequestError",
    "Resync",
    "Stats",
    "TokenSource",
]
