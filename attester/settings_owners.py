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

# -- change notices -----------------------------------------------------------------

# -- expiry reminders ---------------------------------------------------------------

# -- re-confirmation ----------------------------------------------------------------

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
