"""The opt-out link of a change notice: GET shows a button (mail scanners
prefetch links), POST stops the notices, or turns them on again.

The link is also the mail's List-Unsubscribe (RFC 8058): a mail program's
one-click POST ("List-Unsubscribe=One-Click", no cookies) stops them. The
token in the path is the credential, so the POST needs no CSRF cookie."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from ..services import notices


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def off(request: HttpRequest, token: str) -> HttpResponse:
    if request.method != "POST":
        address = notices.optout_target(token).address
        context = {"address": address, "off": notices.opted_out(address), "token": token}
        return render(request, "notices_off.html", context)
    if request.POST.get("action") == "on":
        address = notices.opt_in(token)
        return render(request, "notices_done.html", {"address": address, "off": False, "token": token})
    address = notices.opt_out(token)
    return render(request, "notices_done.html", {"address": address, "off": True, "token": token})
