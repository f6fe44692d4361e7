"""Nexudus' shapes (API.md §9): the OAuth2 password grant, ChatUserMessage records and the
envelopes Nexudus answers with (success, validation with one entry per property, refusal).

A record body failing its model answers every property at once, each with the words Nexudus
users know ("is a required field"), as `property_errors` lists them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from rtt.api.schemas import Answer, Envelope

MAX_USER_ID = 2**31 - 1  # Nexudus ids are Int32
REQUIRED = "is a required field"
UserId = Annotated[int, Field(ge=0, le=MAX_USER_ID)]
RecordId = Annotated[int, Field(ge=1, le=MAX_USER_ID)]
# each property's complaint when it is given but wrong, in the order Nexudus lists them
MESSAGES = {
    "Id": f"must be an integer from 1 to {MAX_USER_ID}",
    "FromUserId": f"must be an integer from 0 to {MAX_USER_ID}",
    "ToUsers": f"must be a list of integers from 0 to {MAX_USER_ID}",
    "ChatText": "must be a string",
    "Delievered": "must be true or false",
}

PropertyError = tuple[str, Any, str]  # (PropertyName, AttemptedValue, Message)


class TokenForm(Envelope):
    """`POST /api/token` (form): the OAuth2 password grant for one of an app's API users
    (`username` may be `<appId>/<user>`)."""

    grant_type: Literal["password"]
    username: Annotated[str, Field(min_length=1)]
    password: str


class TokenAnswer(Answer):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int


class TokenError(Answer):
    error: Literal["invalid_request", "unsupported_grant_type", "invalid_grant"]
    error_description: str | None = None


class ChatUserMessageCreate(Envelope):
    """A new message from `FromUserId` to `ToUsers`; `ChatText` and `Delievered` (Nexudus'
    spelling) are its content."""

    FromUserId: UserId
    ToUsers: list[UserId] | None = None
    ChatText: str | None = None
    Delievered: bool | None = None


class ChatUserMessageUpdate(ChatUserMessageCreate):
    """A change of a message's content; `Id` may come in the path instead."""

    Id: RecordId


class ChatUserMessage(Answer):
    """A stored message as Nexudus shows it. Profiles whose ids are not decimal integers (from
    other dialects) have no Nexudus form: such a sender is null, such recipients are left out."""

    Id: int
    FromUserId: int | None
    ToUsers: list[int]
    ChatText: str | None
    Delievered: bool
    UniqueId: str
    CreatedOn: str
    UpdatedOn: str
    UpdatedBy: None
    IsNew: bool
    SystemId: None


class RecordPage(Answer):
    Records: list[ChatUserMessage]
    CurrentPage: int
    CurrentPageSize: int
    CurrentOrderField: Literal["Id", "CreatedOn", "UpdatedOn"]
    CurrentSortDirection: Literal[1, -1]
    FirstItem: int
    LastItem: int
    TotalItems: int
    TotalPages: int
    HasNextPage: bool
    HasPreviousPage: bool


class RecordRef(Answer):
    Id: int


class Done(Answer):
    """A create, update or delete that happened."""

    Status: Literal[200]
    Message: str
    Value: RecordRef
    OpenInDialog: bool
    OpenInWindow: bool
    RedirectURL: None
    JavaScript: None
    UpdatedOn: str
    UpdatedBy: str
    Errors: None
    WasSuccessful: Literal[True]


class PropertyProblem(Answer):
    AttemptedValue: Any
    Message: str
    PropertyName: str


class Invalid(Answer):
    """400: every property error at once; `Message` joins them as "Property: message"."""

    Message: str
    Value: None
    Errors: list[PropertyProblem]
    WasSuccessful: Literal[False]


class Failed(Answer):
    """Any other refusal (404 unknown record, 403 feature off, 413, 429, 503 with Retry-After)."""

    Status: int
    Message: str
    Value: None
    Errors: None
    WasSuccessful: Literal[False]


class Denied(Answer):
    """401: no user, or one without the role the method needs."""

    Message: Literal["Authorization has been denied for this request."]


def property_errors(error: ValidationError, body: dict[str, Any]) -> list[PropertyError]:
    """One entry per property a record body failed on: absent or null is "required", else the
    property's complaint with the value as sent."""
    failed = {str(e["loc"][0]) for e in error.errors() if e["loc"]}
    return [
        (name, None, REQUIRED) if body.get(name) is None else (name, body[name], message)
        for name, message in MESSAGES.items()
        if name in failed
    ]
