"""Liveness and readiness: `/healthz` says the process answers, `/readyz` that its engine does."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse

READY_TIMEOUT = 2.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    try:
        await asyncio.wait_for(request.app.state.node.engine.ready(), READY_TIMEOUT)
    except Exception as e:  # any failure to answer means not ready
        return JSONResponse({"status": "unavailable", "error": type(e).__name__}, status_code=503)
    return JSONResponse({"status": "ok"})
