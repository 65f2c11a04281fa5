"""What a process is started with: the settings from flags, the environment and `.env`
(`settings`), the staff password and signing key in the data directory (`secrets`), the
staff credential checks built on them (`auth`, with the wrong-password limiter), one key
per purpose derived from the root secret (`keys`), the log setup with its per-call tag
and phone-number masking (`logs`), whose `X-Forwarded-For` is believed (`proxies`), and
how a value from outside is written into a log line (`logsafe`).

May import: `boba_proto` only. Everything else may import this.
"""
