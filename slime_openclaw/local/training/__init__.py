"""The local trainer of the embedded default: objective, checkpoints, weight pushes into the engine."""
