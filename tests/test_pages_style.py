"""The pages a person follows: errors inline on their form, the site's own
404, CSRF 403, 429 and 500 pages, the admin's name; and in Chromium every
page at 1280 and 360 px, light and dark, in English and German: no sideways
scrolling, fingerprint-wide inputs, a dark background in dark mode, no CSP
violation. Screenshots go to var/screenshots/ (git-ignored)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import Client, RequestFactory
from django.utils import timezone

from keys.errors import RateLimited
from keys.models import Key, OutboxMail
from keys.views import http, pages

from .test_browser import browser, site  # noqa: F401 - the fixtures

SCREENSHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
GROUPED = "0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567"  # 40 hex digits as shown


def _layout(html: str) -> None:
    assert '<a class="brand" href="/">' in html and "<nav>" in html and "style.css" in html


# -- inline errors ------------------------------------------------------------


@pytest.mark.django_db
def test_an_empty_upload_shows_the_form_with_the_error(client):
    response = client.post("/upload", {"keytext": "   "})
    assert response.status_code == 400
    html = response.content.decode()
    _layout(html)
    assert "No key was uploaded." in html and 'id="keytext"' in html
    assert "Something is wrong" not in html


@pytest.mark.django_db
def test_garbage_is_shown_again_in_the_form(client):
    response = client.post("/upload", {"keytext": "not a key <b>"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "not a key &lt;b&gt;</textarea>" in html and 'role="alert"' in html


@pytest.mark.django_db
def test_a_too_large_field_is_a_413_on_the_upload_page(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = Client().post("/upload", {"keytext": "x" * 1200})
    assert response.status_code == 413
    html = response.content.decode()
    assert "The upload is too large." in html and 'id="keytext"' in html
    assert "x" * 1200 not in html


@pytest.mark.django_db
def test_an_invalid_search_keeps_the_form_and_the_query(client):
    response = client.get("/search", {"q": "alice"})
    assert response.status_code == 400
    html = response.content.decode()
    _layout(html)
    assert 'value="alice"' in html and 'role="alert"' in html and "No key found." not in html


@pytest.mark.django_db
def test_manage_and_fingerprint_errors_keep_the_input(client):
    response = client.post("/manage", {"email": "not an address"})
    assert response.status_code == 400
    assert 'value="not an address"' in response.content.decode()
    response = client.get("/fingerprint", {"email": "nobody", "fingerprint": "ABCD 1234"})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'value="nobody"' in html and 'value="ABCD 1234"' in html and 'role="alert"' in html


@pytest.mark.django_db
def test_too_many_requests_on_a_page_is_a_429_that_says_to_wait(client, settings):
    settings.RATE_UPLOAD_PER_CLIENT = "0/60"
    response = client.post("/upload", {"keytext": "x"})
    assert response.status_code == 429
    assert "Too many uploads" in response.content.decode() and 'id="keytext"' in response.content.decode()
    assert 1 <= int(response["Retry-After"]) <= 61
    page = pages.error_page(RequestFactory().get("/verify/x"), RateLimited())
    assert page.status_code == 429 and b"Wait a few minutes" in page.content
    page = pages.error_page(RequestFactory().get("/verify/x"), RateLimited(retry_after=600))
    assert b"Try again after" in page.content and b"UTC" in page.content


@pytest.mark.django_db
def test_the_upload_result_lists_every_user_id_with_its_state_and_reason(client, gpg_factory):
    gpg = gpg_factory()
    fpr = gpg.generate("Rita <rita@example.org>")
    gpg.run("--quick-add-uid", fpr, "Rita Two <rita.two@example.org>")
    gpg.run("--quick-add-uid", fpr, "Only A Name")
    gpg.run("--quick-revoke-uid", fpr, "Rita Two <rita.two@example.org>")
    keytext = gpg.run("--export", "--armor", fpr).stdout.decode()
    html = client.post("/upload", {"keytext": keytext}).content.decode()
    assert 'value="rita@example.org" checked' in html
    assert "User IDs that are not published" in html
    assert "Only A Name</span>: This user ID has no email address, so it is never served" in html
    assert "Rita Two &lt;rita.two@example.org&gt;</span>: This user ID has been revoked." in html


@pytest.mark.django_db
def test_a_request_the_client_limit_stops_part_way_says_per_address_what_was_sent(client, cast, settings):
    settings.RATE_MAIL_PER_CLIENT = "1/3600"
    upload = client.post("/upload", {"keytext": cast.alice.text}).content.decode()
    token = upload.split('name="token" value="', 1)[1].split('"', 1)[0]
    addresses = ["alice@example.org", "alice@work.example.com"]
    response = client.post("/upload/request-verify", {"token": token, "address": addresses})
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("a confirmation mail was sent now.") == 1
    assert html.count("too many mails were asked for from your address; try again after") == 1
    assert "Send the mail</button>" in html and "Resend the mail</button>" in html
    assert OutboxMail.objects.filter(kind="verify").count() == 1


@pytest.mark.django_db
def test_a_refusal_outside_the_error_family_is_a_styled_403():
    page = http.forbidden(RequestFactory().get("/manage/x"))
    assert page.status_code == 403
    html = page.content.decode()
    _layout(html)
    assert "Not allowed" in html and "Back to the start page" in html
    api = http.forbidden(RequestFactory().get("/vks/v1/by-email/a@example.org"))
    assert api.status_code == 403 and "error" in json.loads(api.content)


# -- the site's own error pages -------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_page_is_the_styled_404(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    html = response.content.decode()
    _layout(html)
    assert "Page not found" in html and "Back to the start page" in html


@pytest.mark.django_db
def test_unknown_protocol_paths_answer_in_their_own_format(client):
    assert client.get("/vks/v1/nothing").json() == {"error": "Not found."}
    response = client.get("/pks/nothing")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/plain")


@pytest.mark.django_db
def test_a_failed_csrf_check_is_a_styled_403_that_says_to_reload():
    response = Client(enforce_csrf_checks=True).post("/manage", {"email": "alice@example.org"})
    assert response.status_code == 403
    html = response.content.decode()
    _layout(html)
    assert "Reload the page and submit it again" in html and "Cookies must be allowed" in html
    assert "DEBUG" not in html


@pytest.mark.django_db
def test_a_server_error_is_the_styled_500_on_pages_and_the_protocol_format_elsewhere():
    page = http.server_error(RequestFactory().get("/upload"))
    assert page.status_code == 500
    html = page.content.decode()
    _layout(html)
    assert "try again later" in html
    api = http.server_error(RequestFactory().get("/vks/v1/by-email/a@example.org"))
    assert api.status_code == 500 and "error" in json.loads(api.content)


@pytest.mark.django_db
def test_the_api_page_shows_name_and_address_literally(client):
    assert "Name &lt;address&gt;" in client.get("/about/api").content.decode()


@pytest.mark.django_db
def test_the_admin_shows_the_site_name(admin_client, settings):
    settings.SITE_NAME = "Example keys"
    html = admin_client.get("/admin/").content.decode()
    assert "Example keys" in html and "Django administration" not in html
    assert "admin-keys.css" in admin_client.get("/admin/keys/key/").content.decode()


# -- in Chromium -------------------------------------------------------------------

PAGES = {
    "index": "/",
    "search": "/search?q=alice@example.org",
    "upload": "/upload",
    "manage": "/manage",
    "fingerprint": "/fingerprint",
    "about": "/about",
    "about_api": "/about/api",
    "about_privacy": "/about/privacy",
    "404": "/no/such/page",
}


def _check(page, name: str, width: int, scheme: str) -> None:
    scroll = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert scroll[0] <= scroll[1], (name, width, scroll)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [int(c) for c in background[background.index("(") + 1 : -1].split(",")[:3]]
    assert (sum(channels) < 150) == (scheme == "dark"), (name, scheme, background)
    if name in ("manage", "fingerprint") and width >= 1280:
        for field in ("#fp", "#email") if name == "fingerprint" else ("#email",):
            page.fill(field, GROUPED)
            fits = page.evaluate(f"(e => e.scrollWidth <= e.clientWidth)(document.querySelector('{field}'))")
            assert fits, (name, field)
            page.fill(field, "")


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("language", ["en", "de"])
def test_every_page_at_two_widths(browser, site, language, scheme):  # noqa: F811
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    violations: list[str] = []
    for width, height in ((1280, 900), (360, 740)):
        context = browser.new_context(
            viewport={"width": width, "height": height},
            locale=language,
            extra_http_headers={"Accept-Language": language},
        )
        page = context.new_page()
        page.emulate_media(color_scheme=scheme)
        page.on(
            "console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None
        )
        for name, path in PAGES.items():
            response = page.goto(site + path)
            assert response is not None and response.status == (404 if name == "404" else 200), name
            assert page.locator("html").get_attribute("lang") == language
            _check(page, name, width, scheme)
            page.screenshot(path=str(SCREENSHOTS / f"{name}-{language}-{scheme}-{width}.png"), full_page=True)
        # The upload page with its inline error: an empty form.
        page.goto(site + "/upload")
        page.click("main button[type=submit]")
        page.wait_for_selector("#upload-error")
        _check(page, "upload_error", width, scheme)
        page.screenshot(
            path=str(SCREENSHOTS / f"upload_error-{language}-{scheme}-{width}.png"), full_page=True
        )
        # The CSRF 403: the form sent without its cookie.
        page.goto(site + "/manage")
        context.clear_cookies()
        page.fill("#email", "alice@example.org")
        page.click("main button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("h1").count() == 1 and page.locator("nav").count() == 1
        _check(page, "csrf", width, scheme)
        page.screenshot(path=str(SCREENSHOTS / f"csrf-{language}-{scheme}-{width}.png"), full_page=True)
        context.close()
    assert not violations, violations


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
def test_the_admin_key_list_fits_1280_px(browser, site, cast, django_user_model):  # noqa: F811
    """Every column of the key list, Origin, Addresses and Next refresh
    included, is inside the window: nothing is cut or needs scrolling."""
    from keys.services import imports

    django_user_model.objects.create_superuser("admin", "admin@example.org", "a long test password")
    for member in (cast.alice, cast.bob, cast.carol, cast.keyring3):
        imports.import_keys(member.data, actor="test")
    # The widest cells: a refresh date with failures, a revoked and removed key.
    Key.objects.update(next_refresh_at=timezone.now(), refresh_failures=12)
    Key.objects.filter(fingerprint=cast.bob.fingerprint).update(revoked=True, blocked=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(site + "/admin/login/?next=/admin/keys/key/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "a long test password")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    headers = page.evaluate(
        "[...document.querySelectorAll('#result_list thead th')]"
        ".map(th => [th.textContent.trim(), Math.round(th.getBoundingClientRect().right)])"
    )
    names = [name for name, _right in headers]
    for wanted in ("Origin", "Addresses", "Next refresh"):
        assert any(wanted.lower() in name.lower() for name in names), (wanted, names)
    page.screenshot(path=str(SCREENSHOTS / "admin-keys-1280.png"), full_page=True)
    edge = page.evaluate("document.querySelector('#changelist .results').getBoundingClientRect().right")
    assert all(right <= edge for _name, right in headers), (edge, headers)
    fits = page.evaluate(
        "(e => e.scrollWidth <= e.clientWidth)(document.querySelector('#changelist .results'))"
    )
    assert fits
    scroll = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert scroll[0] <= scroll[1], scroll
    context.close()


def _both_widths(page, name: str, language: str, scheme: str) -> None:
    """Check and photograph the page as it is at 1280 and 360 px."""
    for width, height in ((1280, 900), (360, 740)):
        page.set_viewport_size({"width": width, "height": height})
        _check(page, name, width, scheme)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{language}-{scheme}-{width}.png"), full_page=True)


@pytest.mark.django_db(transaction=True)
@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("language", ["en", "de"])
def test_every_flow_page_at_two_widths(browser, site, cast, mailoutbox, language, scheme):  # noqa: F811
    """The upload flow (result, mail sent, confirm, published), the key page
    and the owner's pages (manage, remove confirmation), as a person walks
    them, at both widths, light and dark, in English and German."""
    from .test_browser import mailed_path

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(locale=language, extra_http_headers={"Accept-Language": language})
    page = context.new_page()
    page.emulate_media(color_scheme=scheme)
    page.goto(site + "/upload")
    page.fill("#keytext", cast.alice.text)
    page.click("main button[type=submit]")
    page.wait_for_selector("form[action='/upload/request-verify']")
    _both_widths(page, "upload_result", language, scheme)
    page.click("form[action='/upload/request-verify'] button[type=submit] >> nth=0")
    page.wait_for_selector("ul.addresses")
    assert page.locator("html").get_attribute("lang") == language
    _both_widths(page, "request_sent", language, scheme)
    page.goto(site + mailed_path(mailoutbox, "alice@example.org", "verify"))
    _both_widths(page, "verify", language, scheme)
    page.click("main form button[type=submit]")
    page.wait_for_load_state()
    _both_widths(page, "verified", language, scheme)
    page.goto(f"{site}/key/{cast.alice.fingerprint}")
    _both_widths(page, "key", language, scheme)
    page.goto(site + "/manage")
    page.fill("#email", "alice@example.org")
    page.click("main button[type=submit]")
    page.wait_for_load_state()
    page.goto(site + mailed_path(mailoutbox, "alice@example.org", "manage"))
    _both_widths(page, "manage_key", language, scheme)
    page.click("button[value=remove-key]")
    page.wait_for_load_state()
    assert page.locator("button.danger").count() == 1  # the confirmation step, nothing removed yet
    _both_widths(page, "remove_confirm", language, scheme)
    context.close()
