"""The wire envelopes of every HTTP front door as pydantic models, one module per dialect.

Each door validates its request envelope with these models and rtt/api/openapi.py describes
the same models in `/openapi.json`, so the document cannot drift from what a node accepts. An
envelope stops at the operation: per-operation `data` is an object here and the core checks its
fields (rtt/domain/fields.py), so one rule is written once. A failed validation is turned into
the dialect's own refusal by the door, with the code and message it always answered.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class Envelope(BaseModel):
    """Strict: JSON's types as sent (no "1" for 1, no true for 1), like the core's checks.
    Unknown members are ignored, as brainCloud's, RongCloud's and Nexudus' servers do."""

    model_config = ConfigDict(strict=True, extra="ignore")


class Answer(BaseModel):
    """A response shape. Answers are built as plain dicts on the hot path; these models only
    describe them (and the schemathesis test holds every answer to its model)."""

    model_config = ConfigDict(extra="allow")


def failed_fields(error: ValidationError) -> list[str]:
    """The top-level members a validation failed on, in the model's order ("" for the whole)."""
    return [str(e["loc"][0]) if e["loc"] else "" for e in error.errors()]
