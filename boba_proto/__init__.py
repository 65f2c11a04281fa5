"""BobaRista's sans-IO protocol core.

Pure state machines and codecs: bytes and JSON in, typed events and actions out. Nothing in
this package touches a socket, a file, a clock or the environment; the trio runtime in
`boba_runtime` does all I/O and hands time in as data.
"""
