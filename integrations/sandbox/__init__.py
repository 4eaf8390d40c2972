"""Fakes of the vendors the hub delivers to (SFMC, Marketo, a webhook sink) on one port: see server.py."""

from integrations.sandbox.server import Sandbox, Settings

__all__ = ["Sandbox", "Settings"]
