"""The OpenAPI 3 description of the VKS and Attester shapes (drf-spectacular).

Documentation only: the views read and write these shapes themselves, with
exactly the messages and status codes the clients know. `/api/schema/`
serves the schema, `/api/docs/` a browsable page.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

JSON = "application/json"
TEXT = "text/plain"
PGP_KEYS = "application/pgp-keys"
ARMORED = "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ...\n-----END PGP PUBLIC KEY BLOCK-----\n"
FPR = "0123456789ABCDEF0123456789ABCDEF01234567"

STATUS_TEXT = {
    400: "Malformed request, or not a valid public key.",
    401: "The bearer token could not be verified.",
    403: "Refused: removed from distribution by policy (on the LDAP relay: a server it may not ask).",
    404: "No key found.",
    413: "The upload is too large.",
    415: "Unsupported content type.",
    429: "Too many requests from this client; retry later.",
    502: "The organisation's directory could not be asked.",
    503: "Temporarily unavailable (the database does not answer); a `Retry-After` header says when to retry.",
}


class VksError(serializers.Serializer):
    error = serializers.CharField(help_text="A human-readable message, in the client's language.")


class AttesterErrorBody(serializers.Serializer):
    code = serializers.IntegerField(help_text="The HTTP status code.")
    message = serializers.CharField(help_text="A human-readable message, in the client's language.")


class AttesterError(serializers.Serializer):
    error = AttesterErrorBody()


def vks_errors(*codes: int) -> dict[Any, OpenApiResponse]:
    return {(code, JSON): OpenApiResponse(VksError, description=STATUS_TEXT[code]) for code in codes}


def attester_errors(*codes: int) -> dict[Any, OpenApiResponse]:
    return {(code, JSON): OpenApiResponse(AttesterError, description=STATUS_TEXT[code]) for code in codes}


def armored(media_type: str, description: str) -> dict[Any, OpenApiResponse]:
    return {
        (200, media_type): OpenApiResponse(
            OpenApiTypes.STR,
            description=description,
            examples=[OpenApiExample("armored", value=ARMORED, media_type=media_type)],
        )
    }


def path_parameter(name: str, description: str, pattern: str | None = None) -> OpenApiParameter:
    return OpenApiParameter(
        name, OpenApiTypes.STR, OpenApiParameter.PATH, description=description, pattern=pattern
    )


def query_parameter(name: str, description: str, pattern: str | None = None) -> OpenApiParameter:
    return OpenApiParameter(
        name,
        OpenApiTypes.EMAIL if pattern is None else OpenApiTypes.STR,
        OpenApiParameter.QUERY,
        required=True,
        description=description,
        pattern=pattern,
    )


FINGERPRINT = "^(0[xX])?([0-9A-Fa-f]{40}|[0-9A-Fa-f]{64})$"
KEY_ID = "^(0[xX])?[0-9A-Fa-f]{16}$"
HOST = "^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:[0-9]{1,5})?$"


# -- VKS ---------------------------------------------------------------------

ADDRESS_STATUS = serializers.ChoiceField(choices=["unpublished", "pending", "published", "revoked"])


class VksUpload(serializers.Serializer):
    keytext = serializers.CharField(
        min_length=1, help_text="One or more public keys, armored or binary in base64."
    )


class VksUploadAnswer(serializers.Serializer):
    key_fpr = serializers.CharField(help_text="The key's fingerprint, upper-case hex.")
    status = serializers.DictField(
        child=ADDRESS_STATUS, help_text="Each address of the key and its state; `{}` for a revoked key."
    )
    token = serializers.CharField(help_text="The upload token for `request-verify`.")


# One key: the upload answer; several: a bare array of their fingerprints.
# (VksUploadAnswer is a component through request-verify's answer.)
VKS_UPLOAD_RESULT = OpenApiResponse(
    {
        "oneOf": [
            {"$ref": "#/components/schemas/VksUploadAnswer"},
            {"type": "array", "items": {"type": "string"}, "description": "The fingerprints of a keyring."},
        ]
    },
    description="The upload answer, or for several keys a bare array of their fingerprints.",
)


class VksRequestVerify(serializers.Serializer):
    token = serializers.CharField(min_length=1, help_text="The token of the upload answer.")
    addresses = serializers.ListField(child=serializers.CharField(), help_text="Addresses to confirm.")
    locale = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        help_text="The client's locales, best first (`de_CH`, `de-DE`); the first one shipped is used.",
    )


UPLOAD_EXAMPLE = OpenApiExample("armored key", value={"keytext": ARMORED}, request_only=True)
UPLOAD_ANSWER_EXAMPLE = OpenApiExample(
    "one key",
    value={"key_fpr": FPR, "status": {"alice@example.org": "unpublished"}, "token": "eyJ..."},
    response_only=True,
)
REQUEST_VERIFY_EXAMPLE = OpenApiExample(
    "confirm an address",
    value={"token": "eyJ...", "addresses": ["alice@example.org"], "locale": ["de_CH"]},
    request_only=True,
)


# -- Attester ------------------------------------------------------------------


class AttesterKeySubmission(serializers.Serializer):
    email = serializers.EmailField(help_text="The address.")
    pubkey = serializers.CharField(min_length=1, help_text="The armored public key.")


class LegacySubmission(AttesterKeySubmission):
    attest = serializers.BooleanField(required=False, help_text="Accepted and ignored.")


class WelcomeAnswer(serializers.Serializer):
    sent = serializers.BooleanField(help_text="Whether a welcome mail was sent.")


class SavedAnswer(serializers.Serializer):
    saved = serializers.BooleanField()


@extend_schema_field(
    {
        "oneOf": [
            {"type": "string", "description": "One address."},
            {"type": "array", "items": {"type": "string"}, "maxItems": 50, "description": "Addresses."},
        ]
    }
)
class OneOrMoreAddresses(serializers.Field):
    pass


class EmailLookup(serializers.Serializer):
    email = OneOrMoreAddresses(help_text="One address or a list of at most 50.")


class EmailLookupResult(serializers.Serializer):
    email = serializers.CharField()
    pubkey = serializers.CharField(allow_null=True, help_text="The armored key, or null when none.")
    longid = serializers.CharField(allow_null=True, help_text="Its long key ID, or null.")
    validation = serializers.CharField(
        allow_null=True,
        help_text="The validation level of the address on this key (as the `Key-Validation` header: "
        "`email_confirmed`, `org_directory`, ...; docs/api.md), or null when none.",
    )


class EmailLookupAnswer(serializers.Serializer):
    results = EmailLookupResult(many=True)


class DirectoryCheckAnswer(serializers.Serializer):
    match = serializers.BooleanField()
    fingerprints = serializers.ListField(child=serializers.CharField())


BEARER = OpenApiParameter(
    "Authorization",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="`Bearer <OIDC id_token>` of a configured issuer: proves the address.",
)
API_VERSION = OpenApiParameter(
    "api-version", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False, description="Accepted, ignored."
)


def retry_after(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"]: every 503 (and the 429 of a
    throttle) may carry a `Retry-After` header, in seconds."""
    header = {
        "Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait before retrying."}
    }
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if status in ("429", "503"):
                    response["headers"] = header
    return key_validation(result)


# The key answers that carry the Key-Validation header (keys.services.answers).
KEY_ANSWERS = {
    "vks_by_fingerprint",
    "vks_by_keyid",
    "vks_by_email",
    "attester_pub_lookup",
    "attester_ldap_relay",
}
KEY_VALIDATION = {
    "Key-Validation": {
        "schema": {"type": "string", "example": "email_confirmed"},
        "description": "The validation levels of the addresses the answer carries, comma-separated "
        "(`email_confirmed`, `oidc_verified`, `org_directory`, `upstream_verified`, `upstream_unverified`, "
        "`fingerprint_verified`, ...), or `none` when it carries no published address (a key by "
        "fingerprint without a confirmed address, a revoked key). What each level promises: /about/api "
        "and docs/api.md.",
    }
}


def key_validation(result: dict[str, Any]) -> dict[str, Any]:
    """The Key-Validation header on the 200 (and 304) answers of every key lookup."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if operation.get("operationId") not in KEY_ANSWERS:
                continue
            for status, response in operation.get("responses", {}).items():
                if status in ("200", "304"):
                    response["headers"] = {**response.get("headers", {}), **KEY_VALIDATION}
    return result
