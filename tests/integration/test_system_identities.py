"""System identities are not profiles (issue 8): no token, no socket, no client send, and a
lookalike id counts as the identity it imitates (rtt/domain/identities.py)."""

from __future__ import annotations

import pytest

from tests.integration.test_socket_messaging import counts, error
from tests.integration.test_socket_protocol import assert_disconnect, connect_frame, refused
from tests.support.clients import S2S, socket, token

LOOKALIKES = ["System", "system", "SYSTEM", "System ", " System", "\uff33ystem", "Sys\u200btem"]
LOOKALIKE_IDS = ["exact", "lower", "upper", "trailing-space", "leading-space", "full-width", "zwsp"]


@pytest.mark.parametrize("profile", LOOKALIKES, ids=LOOKALIKE_IDS)
async def test_no_connection_token_is_minted_for_a_system_identity(s2s, profile):
    """Pins: REQUEST_CLIENT_CONNECTION_TOKEN minted a token for profileId "System", and that
    socket's SEND_MESSAGE reached p1 as from {"id":"System"}: a client posing as the app."""
    status, body = await s2s.call(
        "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": profile}
    )
    assert status == 403 and body["status"] == 403, body
    assert body["reason_code"] == 40640 and "token" not in body.get("data", {}), body


@pytest.mark.parametrize("profile", ["Systemic", "p1", "\u0405ystem"], ids=["word", "p1", "cyr"])
async def test_ordinary_profiles_still_get_tokens(s2s, profile):
    """Pins the other side of the rule: ids that only share letters with an identity (or use
    another script's lookalike letters) are ordinary profiles and get tokens."""
    data = await s2s.ok(
        "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": profile}
    )
    assert data["token"]


@pytest.mark.parametrize("profile", LOOKALIKES, ids=LOOKALIKE_IDS)
async def test_connect_as_a_system_identity_is_refused(server, profile):
    """Pins: a token minted elsewhere (any JWT library with the app's secret) for a system
    identity opened a socket that could send as the app."""
    frames, code = await refused(server, connect_frame(profile=profile), query_token=token(profile))
    assert_disconnect(frames, 40304)
    assert code == 4001


@pytest.mark.parametrize("to", LOOKALIKES[1:], ids=LOOKALIKE_IDS[1:])
async def test_client_send_to_a_lookalike_is_40640(server, to):
    """Pins: only the exact id "System" was refused; "system" or "System " reached an inbox
    that the app's own identity would be taken for."""
    async with socket(server, "p1") as p1:
        data = {"toProfileIds": ["p2", to], "contentJson": {"t": 1}}
        reply = await error(p1, "messaging", "SEND_MESSAGE", data)
        assert reply["status"] == 403 and reply["reason_code"] == 40640, reply
        assert (await counts(p1))["sent"]["total"] == 0


async def test_identities_are_per_app(server):
    """An app's own `system_identities` (tight lists "Support Bot") are refused on that app,
    lookalikes included, and are ordinary profiles on an app that does not list them."""
    tight, demo = S2S(server, "tight"), S2S(server, "demo")
    try:
        for profile in ("Support Bot", "support  bot", "SUPPORTBOT"):
            status, body = await tight.call(
                "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": profile}
            )
            assert status == 403 and body["reason_code"] == 40640, (profile, body)
        data = await demo.ok(
            "rttRegistration", "REQUEST_CLIENT_CONNECTION_TOKEN", {"profileId": "Support Bot"}
        )
        assert data["token"]
    finally:
        await tight.close()
        await demo.close()
