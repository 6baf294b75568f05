"""The embedded default, one subpackage per concern.

- ``model/``: the tiny-model factory (checkpoint, tokenizer, chat template);
- ``training/``: the local trainer (objective, checkpoints, weight sync), shared by every loop;
- ``personal/``: simulated users, their preference scorer, the tiny policy's pre-training;
- ``demo/``: ``slime-openclaw demo``, the personal-agent loop with its report.
"""
