"""The local trainer's training methods, named once (importing this module loads no torch).

``binary``, ``opd`` and ``combine`` are the journal's ``Method`` values; ``opd_topk`` is OPD
with the teacher's top-K reverse KL (``TrainerConfig.from_openclaw`` picks it when the
teacher sends top-K log-probs). The demo's ``--method`` choices and the trainer's
validation both read ``METHODS``.
"""

from __future__ import annotations

METHODS = ("binary", "opd", "opd_topk", "combine")
"""Training methods of the local trainer (see trainer_objective.py)."""
