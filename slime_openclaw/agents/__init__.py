"""General agents over the gateway: the episode driver, step judges, step rewards, the signal stage.

- ``episode``: what one episode leaves behind (steps keyed by turn index, the outcome);
- ``driver``: runs one episode as an OpenAI client of the gateway (session = episode);
- ``judges``: process scores of a step (rules on the environment's signals, the PRM judge);
- ``rewards``: ``r = w_outcome * (2 * score - 1) + w_prm * mean(votes)`` and its normalization;
- ``stage``: a finished episode's turns in the journal -> verdicts, hints, samples.

Environments themselves are ``slime_openclaw.envs``; the embedded loop is ``local/agents``.
"""
