"""Accounts on Redis: an identity is a hash created by one Lua script (create_account.lua)
together with its profile and the app's profile count, so two nodes creating the same identity
at once end with one profile. Sessions and socket secrets are plain keys with a TTL: a session
is read and extended by one GETEX, a secret read and removed by one GETDEL."""

from __future__ import annotations

import time

import orjson
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from rtt.engines.base import Account, AccountLimit, ClientSession
from rtt.engines.redis import keys
from rtt.engines.redis.scripts import LUA
from rtt.engines.redis.store import guarded


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _session(raw: bytes | None) -> ClientSession | None:
    if raw is None:
        return None
    fields = orjson.loads(raw)
    return ClientSession(
        fields["id"], fields["app"], fields["profile"], fields["name"], fields["expires"]
    )


def _dump(session: ClientSession, expires_at: float) -> bytes:
    s = session
    return orjson.dumps(
        {
            "id": s.session_id,
            "app": s.app,
            "profile": s.profile,
            "name": s.name,
            "expires": expires_at,
        }
    )


class RedisAccounts:
    """engines/base.py `Accounts` on one Redis, shared by every node."""

    def __init__(self, client: Redis | RedisCluster) -> None:
        self._r = client
        self._create = client.register_script((LUA / "create_account.lua").read_text())

    @guarded
    async def find(self, app: str, kind: str, external_id: str) -> Account | None:
        profile, name, created, secret = await self._r.hmget(
            keys.identity(app, kind, external_id), ["profile", "name", "created", "secret"]
        )
        if profile is None:
            return None
        return Account(profile.decode(), name.decode(), int(created), bytes(secret) or None)

    @guarded
    async def create(
        self, app: str, kind: str, external_id: str, account: Account, max_accounts: int
    ) -> tuple[Account, bool]:
        reply = await self._create(
            keys=[
                keys.identity(app, kind, external_id),
                keys.account(app, account.profile),
                keys.account_count(app),
            ],
            args=[
                account.profile,
                account.name,
                account.created_at,
                account.secret or b"",
                max_accounts,
            ],
        )
        state = reply[0].decode()
        if state == "full":
            raise AccountLimit(app)
        if state == "created":
            return account, True
        profile, name, created, secret = reply[1:]
        return Account(profile.decode(), name.decode(), int(created), bytes(secret) or None), False

    @guarded
    async def open_session(self, session: ClientSession) -> None:
        ttl = session.expires_at - time.time()
        await self._r.set(
            keys.client_session(session.session_id),
            _dump(session, session.expires_at),
            px=_ms(ttl),
        )

    @guarded
    async def touch_session(self, session_id: str, ttl: float) -> ClientSession | None:
        found = _session(await self._r.getex(keys.client_session(session_id), px=_ms(ttl)))
        if found is None:
            return None
        return ClientSession(
            found.session_id, found.app, found.profile, found.name, time.time() + ttl
        )

    @guarded
    async def issue_rtt_secret(self, secret: str, session: ClientSession, ttl: float) -> None:
        expires_at = time.time() + ttl
        await self._r.set(keys.rtt_secret(secret), _dump(session, expires_at), px=_ms(ttl))

    @guarded
    async def take_rtt_secret(self, secret: str) -> ClientSession | None:
        return _session(await self._r.getdel(keys.rtt_secret(secret)))
