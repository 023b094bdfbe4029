"""URL map: one view module per protocol (HKP, VKS, WKD, Attester, LDAP, pages, health)."""

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from keys.views import attester, health, hkp, keypage, ldap, metrics, notices, vks, web, wkd

urlpatterns = [
    path("pks/lookup", hkp.lookup, name="hkp-lookup"),
    path("pks/add", hkp.add, name="hkp-add"),
    path("vks/v1/by-fingerprint/<str:fpr>", vks.ByFingerprint.as_view(), name="vks-by-fingerprint"),
    path("vks/v1/by-keyid/<str:keyid>", vks.ByKeyid.as_view(), name="vks-by-keyid"),
    # Any characters, a newline too: a malformed address is the VKS 400, not Django's 404 page.
    re_path(r"^vks/v1/by-email/(?P<email>[\s\S]+)\Z", vks.ByEmail.as_view(), name="vks-by-email"),
    path("vks/v1/upload", vks.Upload.as_view(), name="vks-upload"),
    path("vks/v1/request-verify", vks.RequestVerify.as_view(), name="vks-request-verify"),
    # WKD: the direct method for the domain named by Host, then the advanced one.
    re_path(r"^\.well-known/openpgpkey/hu/(?P<wkd_hash>[^/]+)$", wkd.direct_key, name="wkd-direct"),
    re_path(r"^\.well-known/openpgpkey/policy$", wkd.direct_policy, name="wkd-direct-policy"),
    re_path(
        r"^\.well-known/openpgpkey/submission-address$",
        wkd.direct_submission_address,
        name="wkd-direct-submission",
    ),
    re_path(
        r"^\.well-known/openpgpkey/(?P<domain>[^/]+)/hu/(?P<wkd_hash>[^/]+)$",
        wkd.advanced_key,
        name="wkd-advanced",
    ),
    re_path(r"^\.well-known/openpgpkey/(?P<domain>[^/]+)/policy$", wkd.advanced_policy, name="wkd-policy"),
    re_path(
        r"^\.well-known/openpgpkey/(?P<domain>[^/]+)/submission-address$",
        wkd.advanced_submission_address,
        name="wkd-submission",
    ),
    # Attester API (FlowCrypt), current and legacy shapes.
    re_path(r"^pub/(?P<query>[^/]+)$", attester.Pub.as_view(), name="attester-pub"),
    path("welcome-message", attester.WelcomeMessage.as_view(), name="attester-welcome"),
    path("ldap-relay", ldap.LdapRelay.as_view(), name="ldap-relay"),
    path("api/v1/directory-check", ldap.DirectoryCheck.as_view(), name="directory-check"),
    path("test/welcome", attester.TestWelcome.as_view(), name="attester-test-welcome"),
    path("initial/legacy_submit", attester.LegacySubmit.as_view(), name="attester-legacy-submit"),
    path("lookup/email", attester.LookupEmail.as_view(), name="attester-lookup-email"),
    # The OpenAPI 3 schema of the VKS and Attester APIs, and a page to browse it (assets served here).
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script as a file (no inline script); Swagger
    # UI sets inline styles, allowed on this page only.
    path(
        "api/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(
            SpectacularSwaggerSplitView.as_view(url_name="api-schema")
        ),
        name="api-docs",
    ),
    path("", web.index, name="index"),
    path("search", web.search, name="search"),
    path("key/<str:fpr>", keypage.key, name="key"),
    path("upload", web.upload, name="upload"),
    path("upload/request-verify", web.request_verify, name="upload-request-verify"),
    path("verify/<str:token>", web.verify, name="verify"),
    path("manage", web.manage, name="manage"),
    path("manage/<str:token>", web.manage_key, name="manage-key"),
    path("notices/off/<str:token>", notices.off, name="notices-off"),
    path("fingerprint", web.fingerprint, name="fingerprint"),
    path("about", web.about, name="about"),
    path("about/server-key.asc", web.server_key_file, name="server-key"),
    path("about/api", web.about_api, name="about-api"),
    path("about/privacy", web.about_privacy, name="about-privacy"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
]

# A database outage is a 503 in the protocol's format (keys/views/http.py).
handler500 = "keys.views.http.server_error"
# No such path: a page of the site, or the protocol's own format (keys/views/http.py).
handler404 = "keys.views.http.not_found"
handler403 = "keys.views.http.forbidden"
