"""slime-openclaw: an agent improves by being used.

An OpenAI-compatible gateway records live traffic token-exactly; each turn's next state
becomes an evaluative reward and a directive hint; slime (or the embedded local trainer)
trains on them with binary RL, hindsight on-policy distillation, or both.
"""

__version__ = "0.1.0"
