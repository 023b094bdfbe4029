"""Self-service management (as keys.openpgp.org's /manage): the owner asks
for a link by mail, then unpublishes addresses or removes the whole key."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext as _

from .. import ratelimit
from ..errors import InvalidKey, InvalidToken, RateLimited
from ..models import Binding, Event, Key, OutboxMail, VerificationToken
from . import outbox, policy, tokens


def request_manage_link(address: str, *, client: str, locale: str = "") -> None:
    """Mail management links for the published keys of `address`, and for
    its revoked keys on which it was confirmed.

    The caller answers the same whether or not the address is known: no
    enumeration. The client's limit is a 429; the address's limit (mails
    queued or sent to it) is silent.
    """
    if not ratelimit.allow(f"manage-ip:{client}", settings.RATE_MANAGE_PER_CLIENT):
        raise RateLimited(retry_after=ratelimit.seconds_left(settings.RATE_MANAGE_PER_CLIENT))
    key_ids = Binding.objects.manageable_key_ids(address)
    if not key_ids or outbox.sent_within(address, OutboxMail.Kind.MANAGE, settings.RATE_MANAGE_PER_ADDRESS):
        return
    Event.objects.record("manage_link_requested", address=address, actor=client)
    outbox.enqueue(OutboxMail.Kind.MANAGE, address, keys=key_ids, locale=locale)


def key_for_manage_token(plain: str) -> Key:
    key = tokens.find(plain, VerificationToken.Purpose.MANAGE).key
    if key.blocked:
        raise InvalidToken()
    return key


def owner_unpublish(plain: str, address: str, *, actor: str) -> Binding:
    key = key_for_manage_token(plain)
    binding = key.bindings.filter(address=address).first()
    if binding is None:
        raise InvalidKey(_("This address is not on this key."))
    policy.unpublish(binding, actor=actor)
    return binding


def owner_remove_key(plain: str, *, actor: str) -> Key:
    """The owner removes the whole key: every address at once, for good."""
    key = key_for_manage_token(plain)
    policy.remove_key_by_policy(key, reason="removed by its owner", actor=actor, tell=False)
    return key
