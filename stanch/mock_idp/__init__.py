"""A real HTTP identity provider with state on disk and fault injection, for demos and tests."""

from stanch.mock_idp.app import create_app, serve

__all__ = ["create_app", "serve"]
