"""The trio runtime: sockets, the store, SMS, timers and the `boba` command line."""
