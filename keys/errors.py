"""One error family for the whole keyserver.

Services raise these; each protocol front-end (HKP text, VKS JSON, Attester
JSON, HTML pages) renders them in its own format. Messages are user-facing and
marked for translation.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _


class KeyserverError(Exception):
    status = 400
    default_message = _("The request could not be processed.")

    def __init__(self, message: object = None) -> None:
        self.message = str(message if message is not None else self.default_message)
        super().__init__(self.message)


class InvalidQuery(KeyserverError):
    default_message = _("Search by full email address, fingerprint or long key ID only.")


class InvalidKey(KeyserverError):
    default_message = _("The uploaded data is not a valid OpenPGP public key.")


class NoKeyUploaded(InvalidKey):
    default_message = _("No key was uploaded.")


class SecretKeyRefused(InvalidKey):
    default_message = _(
        "This is a secret (private) key. Never upload it anywhere: upload only the "
        "public key (gpg --export --armor YOUR-KEY-ID)."
    )


class KeyTooLarge(InvalidKey):
    status = 413
    default_message = _("The upload is too large.")


class InvalidEmail(KeyserverError):
    default_message = _("This is not a valid email address.")


class NotFound(KeyserverError):
    status = 404
    default_message = _("No key found.")


class NotPublished(NotFound):
    """A stored key without a confirmed address, asked for by id where a key
    without user IDs is not served (HKP, the Attester API: rule 6)."""

    default_message = _(
        "This key is stored, but it has no confirmed address on this server, so it is not published."
    )


class InvalidToken(KeyserverError):
    status = 400
    default_message = _(
        "This link is invalid, expired or already used. Please upload the key again to get a new one."
    )


class Unauthorized(KeyserverError):
    status = 401
    default_message = _("The token could not be verified.")


class RateLimited(KeyserverError):
    """A limit is reached; `retry_after` (seconds), when known, becomes the
    answer's Retry-After header."""

    status = 429
    default_message = _("Too many requests. Please try again later.")

    def __init__(self, message: object = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServerError(KeyserverError):
    status = 500
    default_message = _("Something went wrong on the server. Please try again later.")


class RemovedByPolicy(KeyserverError):
    status = 403
    default_message = _("This key or address has been removed from distribution.")


class UnsupportedMediaType(KeyserverError):
    status = 415
    default_message = _("Unsupported content type.")


class Unavailable(KeyserverError):
    """A part the request needs (the database) does not answer: a 503 with
    Retry-After, in the protocol's own format."""

    status = 503
    retry_after = 30
    default_message = _("The keyserver cannot answer this right now. Please try again in a minute.")


class Forbidden(KeyserverError):
    status = 403
    default_message = _("This is not available from your address.")
