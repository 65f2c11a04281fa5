"""Quart-Trio web layer: thin routes over `boba_runtime`, pages, SSE."""
