from django.conf import settings
from django.http import HttpRequest

from .identifiers import keyserver_uri


def site(request: HttpRequest) -> dict[str, str]:
    keyserver = keyserver_uri(settings.SITE_URL)
    # sq refuses plain HTTP under its default network policy ("encrypted").
    insecure = "-p insecure " if keyserver.startswith("hkp:") else ""
    return {
        "site_name": settings.SITE_NAME,
        "site_url": settings.SITE_URL,
        "keyserver": keyserver,
        "sq_keyserver": f"sq keyserver {insecure}--server {keyserver}",
    }
