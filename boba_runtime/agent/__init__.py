"""The local agent: a Deepgram-Voice-Agent-speaking endpoint inside `boba serve` whose
"think" step is a deterministic dialogue manager (`boba_proto.local_agent.dialogue`, pure,
in the core), so a shop with no accounts can take orders over the very same bridge code
(CONTRACT §9). This package keeps only the socket and thread glue (`server`), and the
offline speech engines that let it hear and speak (`speech`, with `pip install .[speech]`).

May import: `boba_proto` and `boba_runtime.call` (the agent link's connection types, for
the in-process connector).
"""
