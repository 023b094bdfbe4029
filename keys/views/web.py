"""Pages for people: search, upload, choose addresses, confirm."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from federation import serve

from .. import privacy
from ..errors import InvalidKey, NoKeyUploaded, NotFound
from ..identifiers import group_fingerprint, normalize_email, parse_address, parse_search
from ..models import Binding
from ..services import manage as owner
from ..services import server_key, submission, verification, wks
from .http import address_status, client_ip


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "index.html")


@require_safe
def search(request: HttpRequest) -> HttpResponse:
    text = request.GET.get("q", "").strip()
    if not text:
        return render(request, "index.html")
    query = parse_search(text)
    if query.kind == "email":
        served = serve.for_email(query.value, client=client_ip(request))
    else:
        served = serve.for_id(query, client=client_ip(request))
    shown = {s.key.pk for s in serve.with_user_ids(served)}
    results = [
        {
            "key": s.key,
            "user_ids": s.user_ids,
            "grouped": group_fingerprint(s.key.fingerprint),
            "unpublished": s.key.pk not in shown,
        }
        for s in served
    ]
    return render(request, "search.html", {"query": text, "results": results})


def _upload_body(request: HttpRequest) -> bytes:
    data = b""
    keyfile = request.FILES.get("keyfile")
    if keyfile is not None:
        data = keyfile.read(settings.MAX_KEY_BYTES * 2 + 1)
    if not data.strip():
        data = request.POST.get("keytext", "").encode("utf-8", errors="replace")
    if not data.strip():
        raise NoKeyUploaded()
    return data


@require_http_methods(["GET", "HEAD", "POST"])
def upload(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return render(request, "upload.html")
    # Errors (an empty form, garbage, a secret key, too large, too many) are
    # shown on this page with the form as filled in (pages.py).
    client = client_ip(request)
    submission.check_rate(client)
    result = submission.store(_upload_body(request), client=client, actor=f"web {client}")
    items = [
        {
            "key": item.key,
            "grouped": group_fingerprint(item.key.fingerprint),
            "status": address_status(item.key),
            "token": verification.upload_token(item.key),
            "problems": item.problems,
        }
        for item in result.keys
    ]
    return render(request, "upload_result.html", {"items": items, "rejected": result.rejected})


@require_POST
def request_verify(request: HttpRequest) -> HttpResponse:
    key = verification.key_for_upload_token(request.POST.get("token", ""))
    addresses = request.POST.getlist("address")
    if not addresses or any(a not in address_status(key) for a in addresses):
        raise InvalidKey(_("Choose at least one address of this key."))
    done = verification.request_verification(
        key,
        addresses,
        client=client_ip(request),
        locale=get_language() or "",
        actor=f"web {client_ip(request)}",
        partial=True,
    )
    status = address_status(key)
    # Per address: its state, and what this request did (a mail now, one sent
    # earlier, or none before `retry_at` because of the address's or the
    # client's limit).
    rows = [{"address": a, "state": s, "mailing": done.get(a)} for a, s in status.items()]
    context = {"key": key, "grouped": group_fingerprint(key.fingerprint), "rows": rows, "status": status}
    context["token"] = request.POST.get("token", "")
    return render(request, "request_sent.html", context)


@require_http_methods(["GET", "HEAD", "POST"])
def verify(request: HttpRequest, token: str) -> HttpResponse:
    """GET only shows a button (mail scanners prefetch links); POST publishes."""
    if request.method != "POST":
        target = verification.verification_target(token)
        return render(
            request,
            "verify.html",
            {"address": target.address, "grouped": group_fingerprint(target.fingerprint)},
        )
    binding = verification.confirm(token, actor=f"web {client_ip(request)}", locale=get_language() or "")
    return render(
        request,
        "verified.html",
        {
            "address": binding.address,
            "grouped": group_fingerprint(binding.key.fingerprint),
            "key": binding.key,
        },
    )


@require_http_methods(["GET", "HEAD", "POST"])
def manage(request: HttpRequest) -> HttpResponse:
    """Ask for a management link; the answer is the same for every address."""
    if request.method != "POST":
        return render(request, "manage.html")
    address = normalize_email(request.POST.get("email", ""))
    owner.request_manage_link(address, client=client_ip(request), locale=get_language() or "")
    return render(request, "manage_sent.html", {"address": address})


@require_http_methods(["GET", "HEAD", "POST"])
def manage_key(request: HttpRequest, token: str) -> HttpResponse:
    """The owner's page: unpublish an address, or remove the whole key."""
    actor = f"owner {client_ip(request)}"
    if request.method == "POST":
        if request.POST.get("action") == "remove-key":
            return _remove_key(request, token, actor=actor)
        owner.owner_unpublish(token, request.POST.get("address", ""), actor=actor)
    key = owner.key_for_manage_token(token)
    bindings = Binding.objects.filter(key=key).order_by("address")
    return render(
        request,
        "manage_key.html",
        {"key": key, "grouped": group_fingerprint(key.fingerprint), "bindings": bindings, "token": token},
    )


def _remove_key(request: HttpRequest, token: str, *, actor: str) -> HttpResponse:
    """Removing the whole key cannot be undone: the first POST asks, a second
    one with confirm=yes removes."""
    if request.POST.get("confirm") != "yes":
        key = owner.key_for_manage_token(token)
        context = {"grouped": group_fingerprint(key.fingerprint), "key": key}
        return render(request, "manage_confirm_remove.html", context)
    key = owner.owner_remove_key(token, actor=actor)
    return render(request, "manage_removed.html", {"grouped": group_fingerprint(key.fingerprint)})


@require_safe
def fingerprint(request: HttpRequest) -> HttpResponse:
    """Compare a fingerprint from another channel with the published keys."""
    email = request.GET.get("email", "").strip()
    given = request.GET.get("fingerprint", "")
    context: dict[str, object] = {"email": email, "given": given}
    if email:
        address = parse_address(email)
        wanted = "".join(given.split()).upper().removeprefix("0X")
        context["results"] = [
            {
                "key": b.key,
                "grouped": group_fingerprint(b.key.fingerprint),
                "match": (b.key.fingerprint == wanted) if wanted else None,
            }
            for b in Binding.objects.served(address)
        ]
        context["checked"] = bool(wanted)
        context["matched"] = any(r["match"] for r in context["results"])  # type: ignore[attr-defined]
    return render(request, "fingerprint.html", context)


@require_safe
def about_api(request: HttpRequest) -> HttpResponse:
    return render(request, "about_api.html")


@require_safe
def about_privacy(request: HttpRequest) -> HttpResponse:
    return render(request, "about_privacy.html", privacy.facts())


@require_safe
def about(request: HttpRequest) -> HttpResponse:
    """This server, and its own keys: the one that signs every mail it sends,
    and those of the Web Key Service's submission addresses (they sign its mails)."""
    key = server_key.current()
    context = {
        "server_key": key,
        "grouped": group_fingerprint(key.fingerprint),
        "predecessor": group_fingerprint(key.predecessor.fingerprint) if key.predecessor else "",
        "wks_keys": [
            {"address": k.address, "grouped": group_fingerprint(k.fingerprint), "url": server_key.url_of(k)}
            for k in wks.ensure_keys()
        ],
    }
    return render(request, "about.html", context)


@require_safe
def server_key_file(request: HttpRequest) -> HttpResponse:
    """A key of this server as given out (with the certification by its
    predecessor): DEFAULT_FROM_EMAIL's, or with ?address= a submission address's."""
    address = request.GET.get("address", "").strip().lower()
    if not address or address == server_key.default_address():
        key = server_key.current()
    elif address in wks.submission_addresses():
        key = server_key.for_address(address)
    else:
        raise NotFound(_("This server has no key of its own for that address."))
    response = HttpResponse(server_key.armored(key), content_type="application/pgp-keys")
    response["Content-Disposition"] = f'attachment; filename="{key.fingerprint}.asc"'
    response["Key-Validation"] = server_key.validation_of(key)
    return response
