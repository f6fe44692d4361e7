"""The brainCloud client's own operations: signing in (authenticationV2/AUTHENTICATE), keeping
the session alive (heartbeat/READ) and asking for a socket (rttRegistration/
REQUEST_CLIENT_CONNECTION).

AUTHENTICATE is the one client operation that runs without a session, so the dispatcher calls
`authenticate` itself; the others are ordinary client operations of the registry, served to a
client session only (`Caller.session`). A socket secret is single use, short-lived
(RTT_RTT_SECRET_SECONDS) and bound to the session that asked for it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
import zlib
from typing import Any

from rtt.core.node import Node, now_ms
from rtt.core.registry import CLIENT, Caller, Operations
from rtt.core.system import endpoints
from rtt.domain import fields
from rtt.domain.accounts import (
    ANONYMOUS,
    KINDS,
    MAX_PASSWORD,
    UNIVERSAL,
    hash_password,
    password_matches,
)
from rtt.domain.messages import new_id
from rtt.engines.base import Account, AccountLimit, ClientSession
from rtt.errors import Reason, RttError, invalid
from rtt.settings import AppConfig

operations = Operations()  # this module's operations; app.py builds the registry from them

AB_TEST_BUCKETS = 100


def session_caller(app: AppConfig, session: ClientSession) -> Caller:
    """Who a client session speaks for, as the registry sees callers."""
    return Caller(session.app, app, session.profile, session.name or None, session.session_id)


def _credentials(data: dict[str, Any]) -> tuple[str, str, str | None]:
    """(kind, external id, password or None) of an AUTHENTICATE request."""
    kind = fields.string(data, "authenticationType", max_length=32)
    if kind not in KINDS:
        raise RttError(
            400,
            Reason.BAD_AUTHENTICATION_TYPE,
            f"authenticationType must be one of {', '.join(KINDS)}",
        )
    if kind == ANONYMOUS:
        return ANONYMOUS, fields.string(data, "anonymousId", max_length=fields.MAX_ID_LENGTH), None
    external = fields.string(data, "externalId", max_length=fields.MAX_ID_LENGTH)
    return UNIVERSAL, external, fields.string(data, "authenticationToken", max_length=MAX_PASSWORD)


async def authenticate(
    node: Node, app_id: str, app: AppConfig, data: object
) -> tuple[ClientSession, dict[str, Any]]:
    """Sign in with an identity (creating its profile if `forceCreate` says so) and open a
    session: (the session, the response data the client library reads)."""
    kind, external, password = _credentials(fields.data_object(data))
    force = fields.boolean(fields.data_object(data), "forceCreate", False)
    accounts = node.engine.accounts
    account = await accounts.find(app_id, kind, external)
    created = False
    if account is None:
        if not force:
            raise RttError(
                202, Reason.MISSING_IDENTITY, "no such identity and forceCreate is false"
            )
        secret = await asyncio.to_thread(hash_password, password) if password is not None else None
        fresh = Account(str(uuid.uuid4()), "", now_ms(), secret)
        try:
            account, created = await accounts.create(
                app_id, kind, external, fresh, node.settings.accounts_max_per_app
            )
        except AccountLimit:
            raise invalid(
                "this app has as many profiles as RTT_ACCOUNTS_MAX_PER_APP allows"
            ) from None
    if password is not None and not created:  # created elsewhere meanwhile: check it too
        stored = account.secret
        if stored is None or not await asyncio.to_thread(password_matches, password, stored):
            raise RttError(403, Reason.WRONG_PASSWORD, "the password does not match the user")
    lifetime = node.settings.client_session_seconds
    session = ClientSession(new_id(), app_id, account.profile, account.name, time.time() + lifetime)
    await accounts.open_session(session)
    return session, {
        "profileId": account.profile,
        "sessionId": session.session_id,
        "newUser": "true" if created else "false",  # brainCloud sends the string
        "playerName": account.name,
        "playerSessionExpiry": max(1, int(lifetime)),
        "abTestingId": zlib.crc32(account.profile.encode()) % AB_TEST_BUCKETS,  # stable
        "createdAt": account.created_at,
        "server_time": now_ms(),
        "authenticationType": kind,
    }


def _session_of(caller: Caller) -> ClientSession:
    if caller.session is None:
        raise invalid("this operation needs a client session (/dispatcherv2)")
    return ClientSession(
        caller.session, caller.app_id, caller.client_profile(), caller.name or "", 0.0
    )


@operations.add("heartbeat", "READ", roles=(CLIENT,))
async def heartbeat_read(node: Node, caller: Caller, data: dict[str, Any]) -> None:
    """What the client library sends every 0.85 x playerSessionExpiry: the dispatcher already
    extended the session, so there is nothing left to do."""
    return None


@operations.add("rttRegistration", "REQUEST_CLIENT_CONNECTION", roles=(CLIENT,), feature="rtt")
async def request_client_connection(
    node: Node, caller: Caller, data: dict[str, Any]
) -> dict[str, Any]:
    """Where to open the socket and the auth map to open it with: the library puts the map in
    the socket's query and in its CONNECT. The secret opens one socket, within
    RTT_RTT_SECRET_SECONDS, for this session's profile only."""
    session = _session_of(caller)
    secret = secrets.token_hex(32)  # hex: the library puts it in the URL without encoding it
    await node.engine.accounts.issue_rtt_secret(secret, session, node.settings.rtt_secret_seconds)
    return {
        "endpoints": endpoints(node.settings),
        "auth": {"X-APPID": caller.app_id, "X-RTT-SECRET": secret},
    }
