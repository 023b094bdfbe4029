"""Log lines: one per event, each with the request id (or the Celery task
id), JSON with LOG_FORMAT=json (python-json-logger), and nothing secret.

The request id comes from the client's (or the front server's) X-Request-ID
when it looks like one, else it is made here; the answer carries it back,
and a task queued by the request carries it into the worker's lines.

What must never reach a log: tokens (they are in confirmation and management
links), keys, mail bodies, secrets. Nothing logs a key or a mail body on
purpose; the filter below cuts tokens out of whatever a library logs (a
path like /verify/<token> in Django's "Not Found" line, a query string).
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")
task_id: ContextVar[str] = ContextVar("task_id", default="")

_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")
# Links carry tokens in the path; APIs carry them in bodies and query strings.
_SECRETS = [
    (re.compile(r"(/(?:verify|manage|upload/request-verify)/)[A-Za-z0-9_\-]{8,}"), r"\1[token]"),
    (
        re.compile(
            r"((?:token|csrfmiddlewaretoken|password|secret)[\"']?\s*[=:]\s*[\"']?)[^\s&\"',;]+", re.I
        ),
        r"\1[hidden]",
    ),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.I), r"\1[hidden]"),
    (re.compile(r"-----BEGIN PGP [A-Z ]+-----.*?(-----END PGP [A-Z ]+-----|$)", re.S), "[key block]"),
]


def new_request_id(given: str) -> str:
    """The client's X-Request-ID when it is a plausible id, else a new one."""
    return given if _VALID_ID.match(given or "") else uuid.uuid4().hex


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class ContextFilter(logging.Filter):
    """Adds request_id and task_id to every record and redacts its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.task_id = task_id.get()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(task_id)s] %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s"


def logging_config(*, level: str, json_lines: bool, access: bool = True) -> dict[str, object]:
    """The LOGGING setting: one handler on stderr, text or JSON."""
    formatter: dict[str, object] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": JSON_FIELDS,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if json_lines
        else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": "keys.logs.ContextFilter"}},
        "formatters": {"line": formatter},
        "handlers": {
            "console": {"class": "logging.StreamHandler", "formatter": "line", "filters": ["context"]}
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.request": {"level": "ERROR"},
            "keyserver.access": {"level": "INFO" if access else "WARNING"},
            # Celery's own handlers would print a second, unfiltered copy.
            "celery": {"handlers": ["console"], "level": level, "propagate": False},
        },
    }


def _scrub(event: dict, hint: dict) -> dict:
    """Sentry events carry no bodies, cookies or query strings, and their
    messages and URLs are redacted like log lines."""
    request = event.get("request") or {}
    for field in ("data", "cookies", "query_string"):
        request.pop(field, None)
    if "url" in request:
        request["url"] = redact(str(request["url"]))
    for entry in (event.get("logentry"), event.get("message")):
        if isinstance(entry, dict) and "message" in entry:
            entry["message"] = redact(str(entry["message"]))
    for exception in (event.get("exception") or {}).get("values", []):
        if "value" in exception:
            exception["value"] = redact(str(exception["value"]))
    return event


def init_sentry(dsn: str, *, environment: str) -> None:
    """Errors of the web processes and the workers to Sentry, without
    personal data (send_default_pii off, bodies dropped)."""
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        max_request_body_size="never",
        integrations=[DjangoIntegration(), CeleryIntegration()],
        before_send=_scrub,  # type: ignore[arg-type]
    )
