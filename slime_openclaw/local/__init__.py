"""The embedded default: tiny-model factory, local trainer, simulated users, demo."""
