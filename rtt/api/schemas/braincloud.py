"""brainCloud's envelopes (API.md §2, §5, §6): `POST /s2sdispatcher` in its stateless and session
forms, `POST /dispatcherv2` (the client API), their answers and the one error object.

A packet's messages are validated one by one (`parse_call`), not with the packet: a malformed
message answers its own error in its slot and the others still run, as brainCloud does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SkipValidation, ValidationError

from rtt.api.schemas import Answer, Envelope, failed_fields
from rtt.errors import RttError, bad_auth, invalid

MAX_PACKET_ID = 2**63 - 1  # what every store keeps as an integer
MAX_PACKET_MESSAGES = 50  # an S2S packet; the client API's bound is RTT_DISPATCHER_MAX_MESSAGES
MAX_SESSION_ID = 64

PacketId = Annotated[int, Field(ge=0, le=MAX_PACKET_ID)]


class OperationCall(Envelope):
    """One operation: `service`/`operation` name it (API.md §2, §5); `data` is its request,
    whose fields the operation itself checks."""

    service: str
    operation: str
    data: SkipValidation[dict[str, Any] | None] = Field(
        None, description="The operation's request object (absent or null: {})."
    )


class Credentials(Envelope):
    """A backend server of an app (API.md §1), checked before anything else is read."""

    appId: str
    serverName: str
    serverSecret: str


class S2SRequest(Credentials, OperationCall):
    """The stateless form: credentials and one operation in one object."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "appId": "demo",
                    "serverName": "backend",
                    "serverSecret": "server-secret",
                    "service": "messaging",
                    "operation": "SYS_SEND_MESSAGE",
                    "data": {
                        "toProfileIds": ["p1"],
                        "contentJson": {"text": "hi"},
                        "fromJson": {"id": None, "name": "Admin"},
                    },
                }
            ]
        }
    )


class S2SPacket(Envelope):
    """The session form. Without `sessionId` the first message must be authenticationV2/
    AUTHENTICATE with the server's credentials as its data; its answer opens the session."""

    packetId: PacketId
    messages: Annotated[
        list[SkipValidation[OperationCall]],
        Field(min_length=1, max_length=MAX_PACKET_MESSAGES),
    ]
    sessionId: Annotated[str, Field(max_length=MAX_SESSION_ID)] | None = None


class ClientPacket(Envelope):
    """A client library's packet, signed with `X-SIG` = hex MD5(body + the app's secret) for
    the app named by `X-APPID`. At most RTT_DISPATCHER_MAX_MESSAGES messages (50)."""

    packetId: PacketId
    messages: Annotated[list[SkipValidation[OperationCall]], Field(min_length=1)]
    sessionId: SkipValidation[str | None] = Field(
        None, description="Anything but a live session's id names none (40303 per message)."
    )
    gameId: SkipValidation[str | None] = Field(None, description="The app; X-APPID decides.")


class ErrorBody(Answer):
    """Every brainCloud refusal (API.md §6), on HTTP and on the socket alike."""

    status: int
    reason_code: int
    status_message: str
    severity: Literal["ERROR"]


class OperationResult(Answer):
    """A successful operation: its answer (null where brainCloud answers null)."""

    status: Literal[200]
    data: dict[str, Any] | None


class S2SPacketAnswer(Answer):
    """One answer per message, in order; `packetId` is null when the packet's was not one."""

    packetId: int | None
    messageResponses: list[OperationResult | ErrorBody]


class ClientPacketAnswer(Answer):
    """One answer per message, in order."""

    packetId: int
    responses: list[OperationResult | ErrorBody]


def credentials(fields: object) -> Credentials:
    """The server credentials of `fields`, else 403/40304 (nothing else of it was read)."""
    if not isinstance(fields, dict):
        raise bad_auth()
    try:
        return Credentials.model_validate(fields)
    except ValidationError:
        raise bad_auth("unknown appId, serverName or serverSecret") from None


def parse_call(message: object) -> OperationCall:
    """One message as an OperationCall, else the refusal the registry gives an unknown one."""
    if not isinstance(message, dict):
        raise invalid("each message must be an object")
    try:
        return OperationCall.model_validate(message)
    except ValidationError:
        service, name = message.get("service"), message.get("operation")
        raise invalid(f"unknown service/operation {service}/{name}") from None


def packet_refusal(error: ValidationError, max_messages: int) -> RttError:
    """The 400/40001 a packet that fails its model answers: its packetId first, then its
    messages (the same words the door always used)."""
    if "packetId" in failed_fields(error):
        return invalid(f"packetId must be an integer from 0 to {MAX_PACKET_ID}")
    return invalid(f"messages must be a list of 1 to {max_messages} operations")
