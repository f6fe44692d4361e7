"""`/admin` against a live node: who may open it, what its endpoints refuse, and the page itself
driven in headless Chromium (Debian's `chromium`, through Playwright's Python package): log in
with Basic credentials, send from the form, see the message arrive on a real RTT socket.

Without /usr/bin/chromium the browser test skips, unless RTT_REQUIRE_CHROMIUM is set (as
`.ci/run` does, after installing it), where it fails."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright, expect

from rtt.settings import ApiUser
from tests.support.clients import S2S, TIMEOUT, socket
from tests.support.server import RunningServer, running
from tests.support.server import test_apps as apps_for
from tests.support.server import test_settings as settings_for

pytestmark = pytest.mark.timeout(90)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = ("admin", "admin-password")  # tests/support/server.APPS_TOML
READER = ("reader", "reader-password")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A node whose demo app has an admin and a user without the admin role."""
    apps = apps_for(tmp_path)
    reader = ApiUser(password=READER[1], roles=["ChatUserMessage-List"])
    demo = apps["demo"].model_copy(update={"users": {**apps["demo"].users, "reader": reader}})
    settings = settings_for(tmp_path, apps={**apps, "demo": demo}, metrics_cache_seconds=0.05)
    async with running(settings) as node:
        yield node


@pytest.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


async def test_only_an_admin_user_with_basic_gets_in(http: httpx.AsyncClient):
    token = await http.post(
        "/api/token", data={"grant_type": "password", "username": ADMIN[0], "password": ADMIN[1]}
    )
    bearer = {"Authorization": f"Bearer {token.json()['access_token']}"}
    refused = [{}, basic("admin", "wrong"), basic(*READER), bearer, basic("nobody", "x")]
    for path in ("/admin", "/admin/admin.js", "/admin/api/stats", "/admin/api/outbox"):
        for headers in refused:
            r = await http.get(path, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.headers["www-authenticate"].startswith('Basic realm="rtt admin"'), r.headers
            assert r.json()["reason_code"] == 40304
    r = await http.post("/admin/api/send", json={"toProfileIds": ["p1"], "text": "x"})
    assert r.status_code == 401

    page = await http.get("/admin", headers=basic(*ADMIN))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/admin/admin.js"' in page.text
    script = await http.get("/admin/admin.js", headers=basic(*ADMIN))
    assert script.status_code == 200 and "text/javascript" in script.headers["content-type"]
    assert (await http.get("/admin/secrets.toml", headers=basic(*ADMIN))).status_code == 404
    assert (await http.get("/admin/api/nothing", headers=basic(*ADMIN))).status_code == 404
    stats = (await http.get("/admin/api/stats", headers=basic(*ADMIN))).json()
    assert stats["app"] == "demo" and stats["user"] == "admin" and stats["connections"] == 0


async def test_a_send_must_be_json_from_the_page_itself(server: RunningServer, http):
    headers = basic(*ADMIN)
    async with socket(server, "p1") as client:
        message = {"toProfileIds": ["p1"], "text": "forged"}
        cross = {**headers, "Origin": "http://evil.example"}
        r = await http.post("/admin/api/send", json=message, headers=cross)
        assert r.status_code == 403, r.text
        r = await http.post(
            "/admin/api/send",
            content=b'{"toProfileIds":["p1"],"text":"forged"}',
            headers={**headers, "Content-Type": "text/plain"},
        )
        assert r.status_code == 400 and r.json()["reason_code"] == 40001, r.text
        r = await http.post("/admin/api/send", json={"toProfileIds": ["p1"]}, headers=headers)
        assert r.status_code == 400, r.text  # no text
        await client.silent(0.3)
        same = {**headers, "Origin": server.url}
        r = await http.post("/admin/api/send", json={**message, "text": "ok"}, headers=same)
        assert r.status_code == 200 and r.json()["msgId"], r.text
        [frame] = await client.pushed(1)
        assert frame["data"]["message"]["content"] == {"text": "ok"}
    outbox = (await http.get("/admin/api/outbox", headers=headers)).json()
    assert outbox["depth"] == 0 and outbox["items"] == [] and outbox["dropped"] == 0


async def test_the_page_in_chromium_sends_a_message_that_arrives(
    server: RunningServer, tmp_path: Path
):
    if not os.path.exists(CHROMIUM):
        if os.environ.get("RTT_REQUIRE_CHROMIUM"):
            pytest.fail(f"{CHROMIUM} is required for the admin page test")
        pytest.skip("chromium not installed")
    s2s = S2S(server)
    async with socket(server, "p1") as client, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            anonymous = await browser.new_page()  # no credentials: the 401 challenge fails
            with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
                await anonymous.goto(server.url + "/admin")

            context = await browser.new_context(
                http_credentials={"username": ADMIN[0], "password": ADMIN[1]}
            )
            page = await context.new_page()
            page.set_default_timeout(TIMEOUT * 1000)
            response = await page.goto(server.url + "/admin")
            assert response is not None and response.status == 200
            # the page runs under its own Content-Security-Policy (no eval): locators only
            await expect(page.locator("#connections")).to_have_text("1")
            await page.fill("#to", "p1, p2")  # p2 is offline: it gets an outbox entry
            await page.fill("#text", "hello from the admin page")
            await page.click("button[type=submit]")
            [frame] = await client.pushed(1)
            entry = frame["data"]
            assert entry["message"]["content"] == {"text": "hello from the admin page"}
            assert entry["message"]["from"] == {"id": None, "name": "admin"}
            await expect(page.locator("#sent")).to_have_text("sent: msgId " + entry["msgId"])
            # the outbox table shows p2's entry (the page refreshes it after a send)
            await expect(page.locator("#pending td:nth-child(2)")).to_have_text(["p2"])
            await expect(page.locator("#depth")).to_have_text("1")
            pending = await s2s.ok("push", "SYS_GET_PENDING", {})
            assert [item["profileId"] for item in pending["items"]] == ["p2"]

            shot = tmp_path / "admin.png"
            await page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        finally:
            await browser.close()
            await s2s.close()
