"""One call's life: `run_call` around the core's `CallSession` (`runner`), the per-process
call registry (slots, stream tokens, outcomes: `registry`; the tokens themselves:
`stream_tokens`), the link to the agent (`agent_link`; opened ahead of its call while
`/voice` is answered: `preopen`), every call's caller audio resampled in one step per
scheduler pass (`media_batch`), the softphone's phone side (`softphone`), the session
recorder (`recorder`) and the call records' tap and writer (`records`: outcome and
transcript into the store as the call goes).

May import: `boba_proto`, `boba_runtime.config`, `boba_runtime.store` (for its errors:
a call's effects go through the `OrderStoreLike` it is handed) and
`boba_runtime.metrics`. Never `cli`, `services` or the web layer.
"""
