"""The pages in a real browser: Chromium driven by Playwright (Debian's chromium).

Upload, choose an address, confirm from the mailed link, see it published;
ask for a management link, unpublish, see the address gone from HKP, VKS,
/pub and WKD; the fingerprint page; the German pages.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from keys.identifiers import wkd_hash

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(os.environ.get("BROWSER_SHOTS", "/tmp/keyserver-shots"))


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not shutil.which(CHROMIUM):
        pytest.fail("chromium is not installed (apt-get install chromium)")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def site(live_server, settings):
    settings.SITE_URL = live_server.url
    settings.WKD_DOMAINS = ["example.org"]
    settings.ALLOWED_HOSTS = ["*"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    return live_server.url


def mailed_path(mailoutbox, address: str, kind: str) -> str:
    mails = [m for m in mailoutbox if address in m.to and f"/{kind}/" in m.body]
    assert mails, f"no {kind} mail to {address}"
    match = re.search(rf"https?://\S+/{kind}/[A-Za-z0-9_-]+", mails[-1].body)
    assert match
    return urlparse(match.group(0)).path


def served_everywhere(client, address: str) -> dict[str, int]:
    domain = address.split("@")[1]
    return {
        "hkp": client.get("/pks/lookup", {"op": "get", "search": address}).status_code,
        "vks": client.get(f"/vks/v1/by-email/{address}").status_code,
        "pub": client.get(f"/pub/{address}").status_code,
        "wkd": client.get(
            f"/.well-known/openpgpkey/{domain}/hu/{wkd_hash(address)}", HTTP_HOST=f"openpgpkey.{domain}"
        ).status_code,
    }


def test_upload_choose_confirm_manage_unpublish_in_a_browser(browser, site, cast, mailoutbox, client):
    page = browser.new_page(locale="en-US")
    page.goto(f"{site}/upload")
    page.fill("#keytext", cast.alice.text)
    page.click("button[type=submit]")
    page.wait_for_selector("text=Key uploaded")
    # Both addresses are offered, checked; the person keeps only one.
    page.uncheck("input[value='alice@work.example.com']")
    page.screenshot(path=str(SHOTS / "upload_result.png"), full_page=True)
    page.click("text=Send confirmation mails")
    page.wait_for_selector("text=Check your mail")
    assert [m.to for m in mailoutbox] == [["alice@example.org"]]

    page.goto(site + mailed_path(mailoutbox, "alice@example.org", "verify"))
    assert page.is_visible("text=Confirm and publish")
    assert served_everywhere(client, "alice@example.org")["hkp"] == 404  # GET alone publishes nothing
    page.screenshot(path=str(SHOTS / "verify.png"), full_page=True)
    page.click("text=Confirm and publish")
    page.wait_for_selector("text=Address published")
    assert served_everywhere(client, "alice@example.org") == {"hkp": 200, "vks": 200, "pub": 200, "wkd": 200}
    assert served_everywhere(client, "alice@work.example.com")["hkp"] == 404

    page.goto(f"{site}/manage")
    page.fill("#email", "alice@example.org")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Check your mail")
    page.goto(site + mailed_path(mailoutbox, "alice@example.org", "manage"))
    page.screenshot(path=str(SHOTS / "manage.png"), full_page=True)
    page.click("form:has(input[value='alice@example.org']) button")
    page.wait_for_load_state()
    assert served_everywhere(client, "alice@example.org") == {"hkp": 404, "vks": 404, "pub": 404, "wkd": 404}
    page.close()


def test_the_fingerprint_page_in_a_browser(browser, site, cast, client, mailoutbox):
    from .keyserver import Keyserver

    Keyserver(client, mailoutbox).publish(cast.bob.data, "bob@example.net")
    page = browser.new_page()
    page.goto(f"{site}/fingerprint")
    page.fill("#email", "bob@example.net")
    grouped = " ".join(cast.bob.fingerprint[i : i + 4] for i in range(0, 40, 4))
    page.fill("#fp", grouped.lower())
    page.click("button[type=submit]")
    page.wait_for_selector("text=Match")
    page.screenshot(path=str(SHOTS / "fingerprint.png"), full_page=True)
    page.fill("#fp", "0000 1111 2222 3333 4444 5555 6666 7777 8888 9999")
    page.click("button[type=submit]")
    page.wait_for_selector("text=Mismatch")
    page.close()


def test_the_pages_render_in_german(browser, site):
    page = browser.new_page(locale="de-DE", extra_http_headers={"Accept-Language": "de-DE,de;q=0.9"})
    for path, words in [
        ("/", "Schlüssel"),
        ("/upload", "hochladen"),
        ("/manage", "Schlüssel"),
        ("/fingerprint", "Fingerabdruck"),
        ("/about/privacy", "Datenschutz"),
    ]:
        page.goto(site + path)
        assert page.locator("html").get_attribute("lang") == "de", path
        assert words.lower() in page.content().lower(), path
    page.screenshot(path=str(SHOTS / "upload_de.png"), full_page=True)
    page.close()


@pytest.mark.parametrize("path", ["/", "/upload", "/about/api", "/api/docs/"])
def test_pages_run_under_the_content_security_policy(browser, site, path):
    """Chromium enforces the CSP header: no violation, and the API page
    (Swagger UI from the sidecar) renders every operation."""
    page = browser.new_page()
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(site + path)
    assert response is not None and response.status == 200
    assert "default-src 'self'" in (response.headers.get("content-security-policy") or "")
    if path == "/api/docs/":
        page.wait_for_selector(".opblock", timeout=15_000)
        assert page.locator(".opblock").count() >= 13
    page.wait_for_timeout(300)
    page.close()
    assert not violations, violations
