"""Fakes of the vendors the hub delivers to, on one port: fake.py says what a fake is, server.py serves them all."""

from integrations.sandbox.server import Sandbox, Settings

__all__ = ["Sandbox", "Settings"]
