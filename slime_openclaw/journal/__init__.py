"""Durable store of turns and samples and their state machine: the only state shared between the loops."""
