"""The trio runtime: sockets, the store, SMS, timers and the `boba` command line.

Grouped by concern, so the listing draws the architecture (DESIGN §3):

    config/   what a process is started with: settings, secrets, staff auth, logging,
              which proxies' X-Forwarded-For to believe
    store/    what persists: the order store, the event feed, the SMS outbox worker
    call/     one call's life: run_call, the call registry, the agent link, the recorder
    agent/    the local agent's socket and thread glue (its dialogue is pure, in the core)
    cli/      the commands: serve (process supervisor), replay, call, bench, check, backup
    __main__  `python -m boba_runtime`, the same as the `boba` console script
    services  what one serving process shares, built once from the settings
    metrics   this process's Prometheus counters

Each folder's `__init__` says what it may import; `tests/runtime/test_layout.py` checks
it. The runtime imports `boba_proto`, never `boba_web` (the composition root, which
imports both, is `boba_web.app`).
"""
