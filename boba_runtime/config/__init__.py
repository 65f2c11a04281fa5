"""What a process is started with: the settings from flags, the environment and `.env`
(`settings`), the staff password and signing key in the data directory (`secrets`), and
the staff credential checks built on them (`auth`).

May import: `boba_proto` only. Everything else may import this.
"""
