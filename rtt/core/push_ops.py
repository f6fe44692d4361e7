"""Push devices and dead letters (API.md §11): S2S `push/*` and the brainCloud client's
`pushNotification/*`, stored in the engine (PushState) so every node and dispatcher sees them.

A profile has at most RTT_PUSH_DEVICES_MAX devices; registering one more drops its oldest.
Registering a device it already has refreshes it (moves it to the newest).
"""

from __future__ import annotations

import re
from typing import Any

from rtt.core.node import Node, now_ms
from rtt.core.registry import CLIENT, SERVER, Caller, Operations
from rtt.domain import fields
from rtt.domain.notification import DEVICE_TYPES, PLATFORMS
from rtt.engines.base import Device
from rtt.errors import invalid

operations = Operations()  # this module's operations; app.py builds the registry from them

MAX_TOKEN_LENGTH = 4096
# FCM tokens are base64url with a colon; APNs tokens are hex. Nothing else may reach a URL path.
TOKEN = re.compile(r"[A-Za-z0-9_:.\-]+")


def _token(data: dict[str, Any], name: str) -> str:
    token = str(fields.string(data, name, max_length=MAX_TOKEN_LENGTH))
    if not TOKEN.fullmatch(token):
        raise invalid(f"{name} may hold only letters, digits and _ : . -")
    return token


def _platform(data: dict[str, Any]) -> str:
    platform = fields.string(data, "platform", max_length=16)
    if platform not in PLATFORMS:
        raise invalid(f"platform must be one of {', '.join(PLATFORMS)}")
    return str(platform)


def _device_type(data: dict[str, Any]) -> str:
    """brainCloud's deviceType as a platform: IOS → apns, ANG → fcm."""
    device_type = fields.string(data, "deviceType", max_length=16)
    if device_type not in DEVICE_TYPES:
        raise invalid(f"deviceType must be one of {', '.join(DEVICE_TYPES)}")
    return DEVICE_TYPES[device_type]


def _profile(data: dict[str, Any]) -> str:
    return str(fields.string(data, "profileId", max_length=fields.MAX_ID_LENGTH))


async def _register(node: Node, app: str, profile: str, platform: str, token: str) -> None:
    device = Device(platform, token, now_ms())
    await node.engine.push.add_device(app, profile, device, node.settings.push_devices_max)


@operations.add("push", "REGISTER_DEVICE", roles=(SERVER,), feature="push")
async def register_device(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    profile, platform, token = _profile(data), _platform(data), _token(data, "token")
    await _register(node, caller.app_id, profile, platform, token)
    return {}


@operations.add("push", "REMOVE_DEVICE", roles=(SERVER,), feature="push")
async def remove_device(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    profile, platform, token = _profile(data), _platform(data), _token(data, "token")
    await node.engine.push.remove_device(caller.app_id, profile, platform, token)
    return {}


@operations.add("push", "GET_DEVICES", roles=(SERVER,), feature="push")
async def get_devices(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    profile = _profile(data)
    found = await node.engine.push.devices(caller.app_id, [profile])
    return {
        "devices": [
            {"platform": d.platform, "token": d.token, "registeredAt": d.registered_at}
            for d in found.get(profile, [])
        ]
    }


@operations.add("push", "GET_DEAD_LETTERS", roles=(SERVER,), feature="push")
async def get_dead_letters(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    """Notifications given up after `max_attempts`, oldest first, with their last error."""
    limit = fields.integer(data, "limit", low=1, high=1000, default=100)
    return {"items": await node.engine.push.dead_letters(caller.app_id, limit)}


@operations.add("pushNotification", "REGISTER", roles=(CLIENT,), feature="push")
async def client_register(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    platform, token = _device_type(data), _token(data, "deviceToken")
    await _register(node, caller.app_id, caller.client_profile(), platform, token)
    return {}


@operations.add("pushNotification", "DEREGISTER", roles=(CLIENT,), feature="push")
async def client_deregister(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    platform, token = _device_type(data), _token(data, "deviceToken")
    await node.engine.push.remove_device(caller.app_id, caller.client_profile(), platform, token)
    return {}


@operations.add("pushNotification", "DEREGISTER_ALL", roles=(CLIENT,), feature="push")
async def client_deregister_all(node: Node, caller: Caller, data: dict[str, Any]) -> dict[str, Any]:
    await node.engine.push.remove_devices(caller.app_id, caller.client_profile())
    return {}
