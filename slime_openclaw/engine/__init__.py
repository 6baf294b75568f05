"""Engines speaking SGLang's native protocol: the client (for SGLang and the embedded engine),
the embedded engine server, and its child process tied to the gateway's life (``child``)."""
