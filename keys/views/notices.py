"""The opt-out link of a change notice: GET shows a button (mail scanners
prefetch links), POST stops the notices, or turns them on again."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from ..services import notices


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
