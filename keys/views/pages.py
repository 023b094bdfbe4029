"""Errors on the pages for people: inline on the form they belong to, or a
page of the site's own layout (404, 403, 429, 500) that says what
to do. The protocol front-ends answer in their own formats (http.py)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views import defaults

from ..errors import KeyserverError, KeyTooLarge, SecretKeyRefused


def _field(request: HttpRequest, name: str, error: KeyserverError) -> str:
    """What the person typed, to show again; nothing of a body too large to read."""
    if isinstance(error, KeyTooLarge):
        return ""
    source = request.POST if request.method == "POST" else request.GET
    return source.get(name, "")


def _upload(request: HttpRequest, error: KeyserverError) -> dict[str, str]:
    # A secret key is not shown back: the person should not paste it anywhere.
    keep = not isinstance(error, SecretKeyRefused)
    return {"keytext": _field(request, "keytext", error) if keep else ""}


def _search(request: HttpRequest, error: KeyserverError) -> dict[str, str]:
    return {"query": request.GET.get("q", "").strip()}


def _manage(request: HttpRequest, error: KeyserverError) -> dict[str, str]:
    return {"email": _field(request, "email", error)}


def _fingerprint(request: HttpRequest, error: KeyserverError) -> dict[str, str]:
    return {"email": request.GET.get("email", "").strip(), "given": request.GET.get("fingerprint", "")}


# The pages whose errors are shown on the page itself, with the form as filled in.
INLINE: dict[str, tuple[str, Callable[[HttpRequest, KeyserverError], dict[str, str]]]] = {
    "/upload": ("upload.html", _upload),
    "/search": ("search.html", _search),
    "/manage": ("manage.html", _manage),
    "/fingerprint": ("fingerprint.html", _fingerprint),
}


def error_page(request: HttpRequest, error: KeyserverError) -> HttpResponse:
    """A KeyserverError on a page: inline on its form, else the error page."""
    inline = INLINE.get(request.path)
    if inline is not None:
        template, fields = inline
        context = {"error": error.message, **fields(request, error)}
        return render(request, template, context, status=error.status)
    page: dict[str, object] = {"message": error.message, "status": error.status}
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        page["retry_at"] = timezone.now() + timedelta(seconds=retry_after)
    return render(request, "error.html", page, status=error.status)


def not_found_page(request: HttpRequest) -> HttpResponse:
    return render(request, "404.html", {"request_path": request.path}, status=404)


def forbidden_page(request: HttpRequest) -> HttpResponse:
    return render(request, "403.html", status=403)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a form sent without its cookie or from a stale page."""
    return render(request, "403_csrf.html", status=403)


def server_error_page(request: HttpRequest) -> HttpResponse:
    """The styled 500; Django's bare one if even that cannot be rendered."""
    try:
        return render(request, "500.html", status=500)
    except Exception:  # the last resort must answer
        return defaults.server_error(request, template_name="500-plain.html")
