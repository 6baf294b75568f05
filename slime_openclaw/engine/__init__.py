"""Engines speaking SGLang's native protocol: the client (for SGLang and the embedded engine) and the embedded engine server."""
