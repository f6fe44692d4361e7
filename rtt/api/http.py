"""What every HTTP front door needs: bounded body reading and JSON responses, errors included."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from rtt.engines.base import EngineUnavailable
from rtt.errors import Reason, RttError, invalid, unavailable
from rtt.protocol import TooDeep, dumps, loads_untrusted


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413/40600) as soon as it passes `limit`. A client gone before
    its body was complete is expected, not a fault: it is refused like any bad request (the
    answer goes nowhere), and the HTTP protocol logs it as one short line."""
    too_large = RttError(413, Reason.TOO_LARGE, f"request body larger than {limit} bytes")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise invalid("the connection closed before the body was complete") from None
    return b"".join(chunks)


def parse_json(raw: bytes, max_depth: int) -> Any:
    """`raw` as JSON, refused (400/40001) when malformed or nested deeper than `max_depth`."""
    try:
        return loads_untrusted(raw, max_depth)
    except TooDeep as e:
        raise invalid(str(e)) from None
    except ValueError:
        raise invalid("body is not valid JSON") from None


def json_response(
    content: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(dumps(content), status, headers, media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (unknown route 404, wrong method 405) in the brainCloud shape,
    like every other error rtt answers. Registered for HTTPException only."""
    if not isinstance(exc, HTTPException):
        raise exc
    error = RttError(exc.status_code, Reason.INVALID_REQUEST, exc.detail)
    return json_response(error.body(), exc.status_code, dict(exc.headers or {}))


RETRY_AFTER_SECONDS = "1"


async def braincloud_endpoint(
    request: Request, dispatch: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Both brainCloud dispatchers' endpoint: an unreachable engine answers 503, having written
    nothing, and every 503 says when to retry (the client library retries on it)."""
    try:
        response = await dispatch(request)
    except EngineUnavailable:
        response = json_response(unavailable().body(), 503)
    if response.status_code == 503:
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
    return response
