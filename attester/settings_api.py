"""Django REST framework and drf-spectacular settings (imported by attester/settings.py)."""

from __future__ import annotations

from typing import Any


def rest_framework_settings() -> dict[str, Any]:
    return {
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        # Errors in each protocol's own format (keys/views/rest.py).
        "EXCEPTION_HANDLER": "keys.views.rest.exception_handler",
    }


# /api/schema/ and /api/docs/ (drf-spectacular); Swagger UI from the sidecar
# package, served by this server (no CDN).
def spectacular_settings(site_url: str) -> dict[str, Any]:
    return {
        "TITLE": "Keyserver API: VKS and Attester",
        "DESCRIPTION": (
            "The JSON and armored-key APIs of this keyserver: VKS as keys.openpgp.org serves it, and "
            'FlowCrypt\'s Attester with its legacy endpoints. VKS errors are `{"error": "…"}`, Attester '
            'errors `{"error": {"code", "message"}}`. HKP and WKD are described in docs/api.md '
            "and docs/wkd.md."
        ),
        "VERSION": "1",
        "SERVE_INCLUDE_SCHEMA": False,
        "SERVERS": [{"url": site_url}],
        "TAGS": [
            {"name": "VKS", "description": "The VKS API of keys.openpgp.org (Hagrid)."},
            {"name": "Attester", "description": "FlowCrypt's Attester API, current and legacy shapes."},
        ],
        "SWAGGER_UI_DIST": "SIDECAR",
        "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
        "REDOC_DIST": "SIDECAR",
        "POSTPROCESSING_HOOKS": [
            "drf_spectacular.hooks.postprocess_schema_enums",
            "keys.views.schemas.retry_after",
        ],
    }
