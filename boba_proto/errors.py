"""Errors that say whose fault they are (the h11 convention)."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: something broke the rules of a protocol we speak."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LocalProtocolError(ProtocolError):
    """We misused the core: our code's fault (e.g. input after a session closed)."""


class InvalidAgentSetting(LocalProtocolError):
    """An agent `Settings` value Deepgram would refuse mid-call; `field` names the input of
    `agent.build_settings` at fault (`think_provider`, `listen_model`, `think_model`,
    `speak_model` or `functions`), so the runtime can name its own setting without
    reading the message."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class RemoteProtocolError(ProtocolError):
    """The peer (Twilio, the agent, a client) sent something malformed: their fault."""


class MenuError(ValueError):
    """A menu file is unusable; the message names the file and what is wrong."""
