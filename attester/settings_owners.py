"""Settings of what keeps owners informed and addresses true: the server's
own OpenPGP key and signed mail, change notices, expiry reminders and
periodic re-confirmation (imported by attester/settings.py, which has read
.env into the environment before).

Every variable is listed with its default in `.env.example`; docs/owners.md
describes each feature.
"""

from datetime import timedelta

import environ

env = environ.Env()

# -- the server's own key and signed mail ---------------------------------------
# The algorithm of a newly made server key (keys.openpgp.signing.SUITES):
# ed25519 (default), ed448, p256, p384, rsa3072, rsa4096.
SERVER_KEY_ALGORITHM = env.str("SERVER_KEY_ALGORITHM", default="ed25519").lower()
# Every mail is PGP/MIME signed with the server key; false sends plain text
# (for a relay that rewrites bodies, e.g. adds a footer, and so breaks signatures).
MAIL_SIGN = env.bool("MAIL_SIGN", default=True)
# Django's list of former SECRET_KEYs: sessions signed and server keys sealed
# under them stay readable while SECRET_KEY is rotated (docs/owners.md).
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])

# -- change notices -----------------------------------------------------------------

# Each published address of a key that changes (new subkey, expiry, revocation,
# a user ID revoked, an address moved upstream, removal by policy) is told,
# in at most one mail per NOTICE_INTERVAL_HOURS; the first change of a quiet
# address waits NOTICE_DELAY_MINUTES so a burst of changes makes one mail.
NOTICES_ENABLED = env.bool("NOTICES_ENABLED", default=True)
NOTICE_INTERVAL_HOURS = env.int("NOTICE_INTERVAL_HOURS", default=24)
NOTICE_DELAY_MINUTES = env.int("NOTICE_DELAY_MINUTES", default=15)
# How long the opt-out link of a notice works (reusable until then).
NOTICE_OPTOUT_TOKEN_TTL = timedelta(days=env.int("NOTICE_OPTOUT_TOKEN_DAYS", default=30))
# How often the beat schedule looks for due notices.
NOTICE_TICK_SECONDS = env.int("NOTICE_TICK_SECONDS", default=60)

# -- expiry reminders ---------------------------------------------------------------
# Days before a key stops working (its primary or its encryption subkeys
# expire) that each published address is mailed how to extend it; once per
# threshold and expiry date. Empty: no reminders.
EXPIRY_REMINDER_DAYS = sorted({int(d) for d in env.list("EXPIRY_REMINDER_DAYS", default=["30", "7"]) if d})
EXPIRY_REMINDER_SECONDS = env.int("EXPIRY_REMINDER_SECONDS", default=3600)
EXPIRY_REMINDER_BATCH = env.int("EXPIRY_REMINDER_BATCH", default=500)

# -- re-confirmation ----------------------------------------------------------------
# A published email_confirmed address confirmed longer ago than this is asked
# to confirm again (0: never; 365 suggested); not confirmed within the grace
# (measured from the mail) it is unpublished.
RECONFIRM_DAYS = env.int("RECONFIRM_DAYS", default=0)
RECONFIRM_GRACE_DAYS = env.int("RECONFIRM_GRACE_DAYS", default=30)
RECONFIRM_BATCH = env.int("RECONFIRM_BATCH", default=200)
RECONFIRM_SECONDS = env.int("RECONFIRM_SECONDS", default=3600)

# -- Web Key Service ----------------------------------------------------------------
# The address gpg-wks-client mails keys to, per served domain: "{domain}" is
# replaced by each of WKD_DOMAINS. Empty: no Web Key Service (and no
# submission-address file). WKD_SUBMISSION_ADDRESS, the older name, is read
# when this one is not set.
WKS_SUBMISSION_ADDRESS = env.str(
    "WKS_SUBMISSION_ADDRESS", default=env.str("WKD_SUBMISSION_ADDRESS", default="")
)
# `manage.py wks_smtpd` listens here (host:port).
WKS_SMTP_BIND = env.str("WKS_SMTP_BIND", default="127.0.0.1:2525")
# Larger inbound mails are refused (SMTP: at DATA; stdin: read no further).
WKS_MAX_MESSAGE_BYTES = env.int("WKS_MAX_MESSAGE_BYTES", default=256 * 1024)
