from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest


def keyserver_uri(site_url: str) -> str:
    """The server as GnuPG and sq name it: hkp://HOST:PORT for plain HTTP (hkp://
    alone means port 11371; http:// makes gpg fetch the page at /), hkps://HOST for HTTPS."""
    parts = urlsplit(site_url)
    if parts.scheme == "https":
        return f"hkps://{parts.netloc}"
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"hkp://{host}:{parts.port or 80}"


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
