"""Settings of what keeps owners informed and addresses true: the server's
own OpenPGP key and signed mail, change notices, expiry reminders and
periodic re-confirmation (imported by attester/settings.py, which has read
.env into the environment before).

Every variable is listed with its default in `.env.example`; docs/owners.md
describes each feature.
"""

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

# -- expiry reminders ---------------------------------------------------------------

# -- re-confirmation ----------------------------------------------------------------
