"""One operation registry: `(service, operation) → handler(node, caller, data)`.

Each core module collects its handlers in an `Operations`; app.py combines them into the node's
registry, explicitly, so what a node serves is decided in one place and not by what happened to
be imported. The S2S dispatcher and the socket request path both call `dispatch`, so an
operation behaves the same whichever door it came through; roles and feature switches are
checked here, once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rtt.domain.fields import data_object
from rtt.engines.base import EngineUnavailable
from rtt.errors import Reason, RttError, invalid, unavailable
from rtt.settings import AppConfig

if TYPE_CHECKING:
    from rtt.core.node import Node

log = logging.getLogger("rtt.registry")

SERVER = "server"
CLIENT = "client"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: a backend server of the app (profile None) or a client profile."""

    app_id: str
    app: AppConfig
    profile: str | None = None
    name: str | None = None
    session: str | None = None  # the client session (/dispatcherv2) the call came in on
    door: str | None = None  # the front door, where role alone does not say (metrics)

    @property
    def role(self) -> str:
        return SERVER if self.profile is None else CLIENT

    @property
    def dialect(self) -> str:
        """The door the call came through: s2s, client, or the door's own name."""
        return self.door or ("s2s" if self.profile is None else "client")

    def client_profile(self) -> str:
        if self.profile is None:
            raise invalid("this operation needs a client profile")
        return self.profile


# an operation answers a data object, or None where brainCloud answers `"data": null`
Handler = Callable[["Node", Caller, dict[str, Any]], Awaitable[dict[str, Any] | None]]


@dataclass(frozen=True, slots=True)
class Operation:
    handler: Handler
    roles: frozenset[str]
    feature: str | None
    reads_many: bool  # runs behind the node's read gate (Node.reads)


class Operations:
    """Handlers under their brainCloud service/operation names."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], Operation] = {}

    def add(
        self,
        service: str,
        name: str,
        *,
        roles: tuple[str, ...],
        feature: str | None = None,
        reads_many: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator: serve `handler` as service/name to callers of `roles`. A client read
        of many items (`reads_many`) waits for its turn at the node's read gate."""

        def register(handler: Handler) -> Handler:
            operation = Operation(handler, frozenset(roles), feature, reads_many)
            self._by_name[(service, name)] = operation
            return handler

        return register

    @classmethod
    def combine(cls, *groups: Operations) -> Operations:
        """One registry of every group; a name served twice is a wiring bug."""
        registry = cls()
        for group in groups:
            clash = registry._by_name.keys() & group._by_name.keys()
            if clash:
                raise ValueError(f"operations registered twice: {sorted(clash)}")
            registry._by_name.update(group._by_name)
        return registry

    def get(self, service: object, name: object) -> Operation | None:
        if isinstance(service, str) and isinstance(name, str):
            return self._by_name.get((service, name))
        return None


async def dispatch(
    node: Node, caller: Caller, service: object, name: object, data: object
) -> dict[str, Any] | None:
    """Run one operation for `caller`, or raise the RttError that explains why not."""
    op = node.operations.get(service, name)
    if op is None:
        raise invalid(f"unknown service/operation {service}/{name}")
    if caller.role not in op.roles:
        raise RttError(403, Reason.BAD_AUTH, f"{service}/{name} is not allowed for a {caller.role}")
    if op.feature is not None and not getattr(caller.app.features, op.feature):
        raise RttError(400, Reason.FEATURE_NOT_ENABLED, f"{op.feature} is not enabled for this app")
    payload = data_object(data)
    node.metrics.ran(caller.dialect, str(service), str(name))
    try:
        if op.reads_many:
            async with node.reads:
                return await op.handler(node, caller, payload)
        return await op.handler(node, caller, payload)
    except EngineUnavailable as e:
        log.warning("%s/%s: engine unavailable: %s", service, name, e)
        raise unavailable() from None
