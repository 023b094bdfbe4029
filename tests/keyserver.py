"""A small client for tests: upload, confirm, and read every lookup path."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlparse

from keys import openpgp


@dataclass
class Answer:
    status: int
    uids: list[str]
    fingerprints: list[str]
    revoked: bool
    text: str


def read_answer(response: Any) -> Answer:
    body = response.content
    if response.status_code != 200 or b"BEGIN PGP" not in body:
        return Answer(response.status_code, [], [], False, body.decode(errors="replace"))
    upload = openpgp.parse(body)
    return Answer(
        200,
        [u.value for c in upload.certs for u in c.user_ids],
        [c.fingerprint for c in upload.certs],
        any(c.revoked for c in upload.certs),
        body.decode(),
    )


class Keyserver:
    def __init__(self, client: Any, mailoutbox: list) -> None:
        self.client = client
        self.outbox = mailoutbox

    # -- submission -----------------------------------------------------
    def upload(self, data: bytes | str) -> Any:
        if isinstance(data, bytes):
            # keys.openpgp.org takes binary keys base64-encoded in keytext.
            text = data.decode() if b"-----BEGIN" in data else base64.b64encode(data).decode()
        else:
            text = data
        return self.client.post("/vks/v1/upload", {"keytext": text}, content_type="application/json")

    def request_verify(self, token: str, addresses: list[str], **extra: Any) -> Any:
        return self.client.post(
            "/vks/v1/request-verify",
            {"token": token, "addresses": addresses, **extra},
            content_type="application/json",
        )

    def link(self, address: str) -> str:
        mails = [m for m in self.outbox if address in m.to]
        assert mails, f"no mail to {address}"
        match = re.search(r"https?://\S+/verify/[A-Za-z0-9_-]+", mails[-1].body)
        assert match, mails[-1].body
        return urlparse(match.group(0)).path

    def confirm(self, address: str) -> Any:
        return self.client.post(self.link(address))

    def publish(self, data: bytes | str, *addresses: str) -> dict[str, Any]:
        """Upload, request and confirm, as a person would over more than an hour.

        The per-address mail window is passed first: publishing the same address
        on a second key within the hour sends no new mail (rule 8).
        """
        self.pass_mail_windows()
        answer = self.upload(data).json()
        self.request_verify(answer["token"], list(addresses))
        for address in addresses:
            assert self.confirm(address).status_code == 200
        return answer

    @staticmethod
    def pass_mail_windows() -> None:
        """Let a day pass for the limits: the mails sent and the counters are older."""
        from datetime import timedelta

        from django.core.cache import cache
        from django.db.models import F

        from keys.models import OutboxMail

        cache.clear()
        OutboxMail.objects.update(created=F("created") - timedelta(days=1))

    # -- lookups ----------------------------------------------------------
    def get(self, path: str) -> Answer:
        return read_answer(self.client.get(path))

    def hkp_get(self, search: str) -> Answer:
        return self.get(f"/pks/lookup?op=get&options=mr&search={quote(search)}")

    def hkp_index(self, search: str) -> Any:
        return self.client.get(f"/pks/lookup?op=index&options=mr&fingerprint=on&search={quote(search)}")

    def by_email(self, address: str) -> dict[str, Answer]:
        """Every lookup path by address."""
        return {
            "hkp get": self.hkp_get(address),
            "hkp get <addr>": self.hkp_get(f"Someone <{address}>"),
            "vks by-email": self.get(f"/vks/v1/by-email/{quote(address)}"),
        }

    def by_id(self, fingerprint: str, key_id: str) -> dict[str, Answer]:
        """Every lookup path by fingerprint or key id."""
        return {
            "hkp get fpr": self.hkp_get(f"0x{fingerprint}"),
            "hkp get keyid": self.hkp_get(f"0x{key_id}"),
            "hkp get keyid no 0x": self.hkp_get(key_id.lower()),
            "vks by-fingerprint": self.get(f"/vks/v1/by-fingerprint/{fingerprint}"),
            "vks by-keyid": self.get(f"/vks/v1/by-keyid/{key_id}"),
        }
