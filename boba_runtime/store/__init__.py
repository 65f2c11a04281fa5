"""What persists: the order store with its SQLite and PostgreSQL backends and its one
"changed" signal (`order_store`), the order-event feed that tails the store's event table
for SSE (`feed`), the SMS outbox worker (`sms`), the call records' tables with the
daily report, retention and erasure (`records_schema`, `records`, `retention`), and the
shop's day kept next to the orders: sold-out items and the pause switch, with each
process's live view (`shop`).

May import: `boba_proto` (the order rules live there) and `boba_runtime.config`. Never
`call`, `cli`, `services` or the web layer: calls reach the store, not the reverse.
"""
