"""What persists: the order store with its SQLite and PostgreSQL backends and its one
"changed" signal (`order_store`), the order-event feed that tails the store's event table
for SSE (`feed`), the SMS outbox worker (`sms`), and the call records' tables with the
daily report, retention and erasure (`records_schema`, `records`, `retention`).

May import: `boba_proto` (the order rules live there) and `boba_runtime.config`. Never
`call`, `cli`, `services` or the web layer: calls reach the store, not the reverse.
"""
