"""System checks for settings that must be right in production."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Warning, register


@register()
def check_settings(app_configs: Any, **kwargs: Any) -> list[Warning]:
    problems = []
    if (
        getattr(settings, "SECRET_KEY_FROM_FILE", False)
        and not settings.DEBUG
        and settings.SITE_URL.startswith("https://")
    ):
        problems.append(Warning("SECRET_KEY is not set; a generated key in var/ is used.", id="keys.W001"))
    if settings.EMAIL_BACKEND.endswith("filebased.EmailBackend") and settings.SITE_URL.startswith("https://"):
        problems.append(
            Warning(
                "EMAIL_URL is not set: confirmation mail is written to files, not sent.",
                id="keys.W002",
            )
        )
    return problems
