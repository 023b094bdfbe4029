"""URL map: one view module per protocol (HKP, VKS, WKD, Attester, LDAP, pages, health)."""

from django.contrib import admin
from django.urls import include, path, re_path

from keys.views import attester, health, hkp, ldap, metrics, vks, web, wkd

urlpatterns = [
    path("pks/lookup", hkp.lookup, name="hkp-lookup"),
    path("pks/add", hkp.add, name="hkp-add"),
    path("vks/v1/by-fingerprint/<str:fpr>", vks.by_fingerprint, name="vks-by-fingerprint"),
    path("vks/v1/by-keyid/<str:keyid>", vks.by_keyid, name="vks-by-keyid"),
    re_path(r"^vks/v1/by-email/(?P<email>.+)$", vks.by_email, name="vks-by-email"),
    path("vks/v1/upload", vks.upload, name="vks-upload"),
    path("vks/v1/request-verify", vks.request_verify, name="vks-request-verify"),
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
    re_path(r"^pub/(?P<query>[^/]+)$", attester.pub, name="attester-pub"),
    path("welcome-message", attester.welcome_message, name="attester-welcome"),
    path("ldap-relay", ldap.ldap_relay, name="ldap-relay"),
    path("api/v1/directory-check", ldap.directory_check, name="directory-check"),
    path("test/welcome", attester.welcome_message, name="attester-test-welcome"),
    path("initial/legacy_submit", attester.legacy_submit, name="attester-legacy-submit"),
    path("lookup/email", attester.lookup_email, name="attester-lookup-email"),
    path("", web.index, name="index"),
    path("search", web.search, name="search"),
    path("upload", web.upload, name="upload"),
    path("upload/request-verify", web.request_verify, name="upload-request-verify"),
    path("verify/<str:token>", web.verify, name="verify"),
    path("manage", web.manage, name="manage"),
    path("manage/<str:token>", web.manage_key, name="manage-key"),
    path("fingerprint", web.fingerprint, name="fingerprint"),
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
