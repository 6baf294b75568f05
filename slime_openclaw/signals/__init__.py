"""Next-state signals: judges (evaluative), hint extractors (directive), the teacher query.
Never on the serving path.

- context.py: what judges see of a turn (task, response, next state as bounded text).
- judge.py: the ``Judge`` protocol, majority voting, the LLM process-reward judge.
- rules.py: rule-based judges (tool outcomes, test verdicts, explicit ratings), composition.
- hints.py: LLM hint votes, the explicit-correction rule, the hint selection rule.
- judge_backends.py: how a model judge gets text (engine ``/generate`` or OpenAI URL), with
  per-call timeout and bounded retries.
- teacher.py: teacher context (hint placement) and teacher log-probs on the response ids.
- samples.py: training samples per method (binary, opd, combine), a pure function.
- pipeline.py: one turn's signals as the method needs them; config.py: settings and factories.
- worker.py: the async loop between the journal's OBSERVED turns and READY samples.
"""
