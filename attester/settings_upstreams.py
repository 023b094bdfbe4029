"""Settings of the federation: upstream sources and the outbound helper,
scheduled refresh, OIDC issuers (imported by attester/settings.py, which
has read .env into the environment before).

Every variable is listed with its default in `.env.example`.
"""

import environ

env = environ.Env()

# Refresh (issue 5 adds the behaviour; the values are read here already).
REFRESH_INTERVAL_DAYS = env.int("REFRESH_INTERVAL_DAYS", default=30)
REFRESH_NEAR_EXPIRY_DAYS = env.int("REFRESH_NEAR_EXPIRY_DAYS", default=14)
REFRESH_AFTER_EXPIRY_DAYS = env.int("REFRESH_AFTER_EXPIRY_DAYS", default=30)
REFRESH_REASSIGN = env.bool("REFRESH_REASSIGN", default=False)
# Names of sources (HKP or VKS) that uploaded keys are refreshed from, merge
# only (a refresh never publishes an address). Empty: uploads are not refreshed.
REFRESH_PEERS = env.list("REFRESH_PEERS", default=[])
REFRESH_BATCH = env.int("REFRESH_BATCH", default=1000)
REFRESH_TICK_SECONDS = env.int("REFRESH_TICK_SECONDS", default=60)
# A leased key is refreshed again after this long if its worker died.
REFRESH_LEASE_MINUTES = env.int("REFRESH_LEASE_MINUTES", default=15)
REFRESH_RATE_PER_SOURCE = env.str("REFRESH_RATE_PER_SOURCE", default="60/60")
# OpenID Connect issuers whose id_tokens publish an address at once on the
# Attester API: a JSON list of {"issuer", "jwks_url", "audiences": [...],
# "email_claim": "email"}.
OIDC_ISSUERS = env.json("OIDC_ISSUERS", default=[])
OIDC_JWKS_TIMEOUT = env.float("OIDC_JWKS_TIMEOUT", default=5.0)
OIDC_JWKS_CACHE_SECONDS = env.int("OIDC_JWKS_CACHE_SECONDS", default=3600)
OIDC_RATE_PER_CLIENT = env.str("OIDC_RATE_PER_CLIENT", default="30/60")

# Federation (issue 4): outbound calls. Loopback, link-local and private
# targets are refused unless one of these networks holds them (CIDRs).
FEDERATION_ALLOWED_NETWORKS = env.list("FEDERATION_ALLOWED_NETWORKS", default=[])
# For tests and split-horizon DNS: host names resolved to fixed addresses.
FEDERATION_HOST_MAP = env.dict("FEDERATION_HOST_MAP", default={})
FEDERATION_CA_BUNDLE = env.str("FEDERATION_CA_BUNDLE", default="")
FEDERATION_MAX_RESPONSE_BYTES = env.int("FEDERATION_MAX_RESPONSE_BYTES", default=4 * 1024 * 1024)
# manage.py import_dump: serve mirrored keys' addresses as unverified fallback answers.
IMPORT_DUMP_BIND_ADDRESSES = env.bool("IMPORT_DUMP_BIND_ADDRESSES", default=False)
# GET /ldap-relay (Attester) may query only these LDAP hosts (besides the
# hosts of configured LDAP sources and, by default, keys.<domain> names).
LDAP_RELAY_ALLOWED_HOSTS = env.list("LDAP_RELAY_ALLOWED_HOSTS", default=[])
LDAP_RELAY_ALLOW_KEYS_SUBDOMAINS = env.bool("LDAP_RELAY_ALLOW_KEYS_SUBDOMAINS", default=True)
# Upstream sources, in order: a JSON list of {"name", "kind": ldap|hkp|vks|wkd,
# "url", "domains": [authoritative domains], "timeout", "enabled", "options"}.
# Sources can also be added in the admin.
FEDERATION_SOURCES = env.json("FEDERATION_SOURCES", default=[])
FEDERATION_SOURCE_TIMEOUT = env.float("FEDERATION_SOURCE_TIMEOUT", default=5.0)
# Each process reads the list of enabled sources at most this often.
SOURCES_CACHE_SECONDS = env.float("SOURCES_CACHE_SECONDS", default=5.0)
FEDERATION_TOTAL_TIMEOUT = env.float("FEDERATION_TOTAL_TIMEOUT", default=10.0)
# Ask the organisation's directory first about every address, not only its own domains.
FEDERATION_ORG_FIRST = env.bool("FEDERATION_ORG_FIRST", default=False)
FEDERATION_RATE_PER_CLIENT = env.str("FEDERATION_RATE_PER_CLIENT", default="60/60")
FEDERATION_NEGATIVE_SECONDS = env.int("FEDERATION_NEGATIVE_SECONDS", default=300)
FEDERATION_BREAKER_FAILURES = env.int("FEDERATION_BREAKER_FAILURES", default=3)
FEDERATION_BREAKER_SECONDS = env.int("FEDERATION_BREAKER_SECONDS", default=60)
