"""Shared test helpers (a real `boba serve` stack on 127.0.0.1:0, SSE readers)."""
