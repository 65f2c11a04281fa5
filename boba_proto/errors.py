"""Errors that say whose fault they are (the h11 convention)."""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class: something broke the rules of a protocol we speak."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LocalProtocolError(ProtocolError):
    """We misused the core: our code's fault (e.g. input after a session closed)."""


class RemoteProtocolError(ProtocolError):
    """The peer (Twilio, the agent, a client) sent something malformed: their fault."""


class MenuError(ValueError):
    """A menu file is unusable; the message names the file and what is wrong."""
