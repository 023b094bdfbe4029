"""HKP (draft-gallagher-openpgp-hkp): /pks/lookup and /pks/add.

gpg --recv-keys asks `op=get&options=mr&search=0x<FPR>`, --search-keys
`op=index&options=mr&fingerprint=on&search=<addr>`, --locate-external-keys
adds `exact=on`. Errors are text/plain.
"""

from __future__ import annotations

import json
from datetime import UTC

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from federation import serve
from federation.serve import Served

from .. import clock
from ..errors import InvalidKey, InvalidQuery, NoKeyUploaded, NotFound, NotPublished
from ..identifiers import Query, parse_search
from ..models import Subkey
from ..services import answers, submission
from ..services.verification import Mailing
from .http import address_status, answer, client_ip, key_response, raw_query

TEXT = "text/plain; charset=utf-8"


def find_keys(query: Query, *, client: str) -> list[Served]:
    """What HKP may show for a query (publication rules 3, 5 and 6)."""
    if query.kind == "email":
        return serve.for_email(query.value, client=client)
    served = serve.for_id(query, client=client)
    shown = serve.with_user_ids(served)
    if served and not shown:
        raise NotPublished()
    return shown


@require_safe
def lookup(request: HttpRequest) -> HttpResponse:
    params = raw_query(request)
    op = params.get("op", "get")
    if op in ("stats", "x-stats"):
        return HttpResponse(json.dumps(serve.stats()), content_type="application/json")
    if op in ("hget", "x-hget", "photo") or op.startswith("x-"):
        # Real HKP operations this server does not implement (HKP draft, 3.1.2).
        return HttpResponse(_("Operation not supported.") + "\n", status=501, content_type=TEXT)
    if op not in ("get", "index", "vindex"):
        raise InvalidQuery(_("Unknown operation: use op=get, index, vindex or stats."))
    search = params.get("search", "")
    if not search:
        raise InvalidQuery()
    query = parse_search(search)
    served = find_keys(query, client=client_ip(request))
    if not served:
        raise NotFound()
    if op == "get":
        return key_response(request, served)
    if "mr" in params.get("options", "").split(","):
        index = answers.mr_index(served, clock.now())
        return answer(request, index, TEXT, answers.modified(served), answers.level_header(served))
    # Without options=mr the draft leaves the format open: a page for people.
    subkeys = Subkey.objects.fingerprints_of([s.key.pk for s in served]) if op == "vindex" else {}
    items = [{"key": s.key, "user_ids": s.user_ids, "subkeys": subkeys.get(s.key.pk, [])} for s in served]
    return render(request, "hkp_index.html", {"served": items, "search": search, "verbose": op == "vindex"})


def _keytext(request: HttpRequest) -> bytes:
    content_type = request.content_type or ""
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise InvalidKey(_("Send the key as the form field keytext (application/x-www-form-urlencoded)."))
    keytext = request.POST.get("keytext", "")
    if not keytext.strip():
        raise NoKeyUploaded(_("The form field keytext is missing or empty."))
    return keytext.encode("utf-8", errors="replace")


@csrf_exempt
@require_POST
def add(request: HttpRequest) -> HttpResponse:
    """Store the keys in `keytext` and mail their unconfirmed addresses."""
    client = client_ip(request)
    result = submission.submit(
        lambda: _keytext(request), client=client, actor=f"hkp {client}", mail_unconfirmed=True
    )
    lines = []
    for item in result.keys:
        lines.append(item.key.fingerprint)
        for address, state in address_status(item.key, item.states).items():
            lines.append(f"  {address}: {state}{_mail_note(state, item.mails.get(address))}")
        for uid, reason in item.problems:
            lines.append(_("  %(uid)s: not published. %(reason)s") % {"uid": uid, "reason": reason})
    for reason in result.rejected:
        lines.append(_("Refused: %(reason)s") % {"reason": reason})
    return HttpResponse("\n".join(lines) + "\n", content_type=TEXT)


def _mail_note(state: str, mailing: Mailing | None) -> str:
    """What this upload did about the address's confirmation mail."""
    if mailing is not None and mailing.sent:
        return _(". A confirmation mail was sent now.")
    if mailing is not None and mailing.retry_at is not None:
        when = mailing.retry_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        if mailing.client_limited:
            note = _(
                ". No confirmation mail was sent: too many were asked for from your address; "
                "try again after %(when)s."
            )
        elif mailing.earlier:
            note = _(". A confirmation mail was sent earlier; no other is sent before %(when)s.")
        else:
            note = _(
                ". No confirmation mail was sent (the limit for this address); try again after %(when)s."
            )
        return note % {"when": when}
    if state == "pending":
        return _(". Already pending: the confirmation mail was sent earlier.")
    return ""
