"""RongCloud's system channel (API.md §8): the v4 JSON send, the classic publish.json form, their
answers and RongCloud's error object. Values past a field's type (recipient counts, sizes,
message types) are the core's rules (rtt/core/channel.py) and answer the same 1002/1005."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, ValidationError

from rtt.api.schemas import Answer, Envelope
from rtt.domain.fields import MAX_ID_LENGTH
from rtt.errors import RttError, invalid

UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Flag = Annotated[int, Field(ge=0, le=1)]
FormFlag = Annotated[str, Field(pattern=r"^[01]$")]


class ChannelSend(Envelope):
    """`POST /v4/system-channel/message/send`: one message from `fromUserId` to each of
    `toUserIds` (at most the app's `max_recipients_rongcloud`, 100)."""

    fromUserId: UserId
    toUserIds: Annotated[list[UserId], Field(min_length=1)]
    messageType: Annotated[str, Field(min_length=1, max_length=64)]
    content: str
    pushContent: str | None = None
    pushData: str | None = None
    pushExt: str | None = Field(None, description="A JSON object, as text.")
    shouldPersist: Flag | None = None
    isCounted: Flag | None = None
    contentAvailable: Flag | None = None
    disablePush: bool | None = None
    disableUpdateLastMsg: bool | None = None


class PublishForm(Envelope):
    """`POST /message/system/publish.json`: the same send as a form, `toUserId` repeated."""

    fromUserId: UserId
    toUserId: Annotated[list[UserId], Field(min_length=1)]
    objectName: Annotated[str, Field(min_length=1, max_length=64)]
    content: str
    pushContent: str | None = None
    pushData: str | None = None
    pushExt: str | None = None
    isPersisted: FormFlag | None = None
    isCounted: FormFlag | None = None
    contentAvailable: FormFlag | None = None
    disablePush: Annotated[str, Field(pattern=r"^(?i:true|false|1|0)$")] | None = None


class MessageUID(Answer):
    userId: str
    messageUID: str


class SentUIDs(Answer):
    messageUIDs: list[MessageUID]


class SendAnswer(Answer):
    """One `messageUID` per distinct recipient."""

    code: Literal[0]
    result: SentUIDs


class PublishAnswer(Answer):
    code: Literal[200]


class RongCloudError(Answer):
    """1002 parameter, 1004 signature, 1005 too large, 1008 rate, 1009 not enabled, 1000
    internal (HTTP 503, retry)."""

    code: int
    errorMessage: str


def refusal(error: ValidationError) -> RttError:
    """A body that fails its model: 400 (RongCloud's 1002), naming the first field."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    return invalid(f"{where}: {first['msg']}")
