"""OpenAI-compatible gateway: wire format, streaming, sessions and turn recording. Knows nothing of training."""
