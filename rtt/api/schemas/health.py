"""What `/healthz` and `/readyz` answer."""

from __future__ import annotations

from typing import Literal

from rtt.api.schemas import Answer


class Health(Answer):
    """`ok`, or `unavailable` with the kind of failure (readiness only)."""

    status: Literal["ok", "unavailable"]
    error: str | None = None
