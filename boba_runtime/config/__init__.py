"""What a process is started with: the settings from flags, the environment and `.env`
(`settings`), the staff password and signing key in the data directory (`secrets`),
the staff credential checks built on them (`auth`), the log setup with its per-call tag
and phone-number masking (`logs`), and whose `X-Forwarded-For` is believed (`proxies`).

May import: `boba_proto` only. Everything else may import this.
"""
