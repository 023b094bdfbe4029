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
