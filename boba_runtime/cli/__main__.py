"""`python -m boba_runtime.cli COMMAND` is `boba COMMAND` (workers of `boba serve` start so)."""

from boba_runtime.cli import main

raise SystemExit(main())
