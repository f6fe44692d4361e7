"""RFC 6455 only: the opening handshake, frames and the asyncio protocol. It knows a small
handler Protocol and nothing of RTT, the core or the engines."""
