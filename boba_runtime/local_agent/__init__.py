"""The local agent: a Deepgram-Voice-Agent-speaking endpoint inside `boba serve` whose
"think" step is a deterministic dialogue manager (`dialogue.LocalDialogue`), so a shop
with no accounts can take orders over the very same bridge code (CONTRACT §9)."""
