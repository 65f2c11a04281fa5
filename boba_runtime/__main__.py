"""`python -m boba_runtime …` works like the `boba` console script."""

from boba_runtime.cli import main

raise SystemExit(main())
