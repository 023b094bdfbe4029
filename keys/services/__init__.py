"""The keyserver's domain logic, split by workflow. Every front-end ends here.

- `imports`: the one import service (limits, policy blocks, merge); every
  path that stores a key (uploads, fallback, refresh, dump imports) uses it.
- `submission`: an upload from a client, end to end (rate check, import,
  confirmation mails): HKP add, VKS upload, the upload page, the Attester.
- `verification`: confirmation mails, their tokens and the confirmation.
- `publication`: the only writer of binding states and of the published and
  per-address forms.
- `manage`: the owner's management links and actions.
- `policy`: removal by policy, purge, fingerprint audits.
- `welcome`: the Attester's encrypted welcome mail.
- `mail`, `tokens`, `schedule`, `housekeeping`, `locking`: their parts.

Nothing here imports federation or a view (import-linter checks it).
"""
