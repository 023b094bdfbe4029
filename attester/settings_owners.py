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
