"""OpenAI-compatible gateway: wire format, streaming, sessions and turn recording. Knows nothing of training.

Modules: ``app`` (``make_app(GatewayDeps)``, routes, errors, back-pressure), ``chat`` (the
chat-completions exchange), ``wire`` (request validation), ``responses`` (response and SSE
shapes), ``generation`` (abort-and-resume over ``Engine.stream``), ``sessions`` (session
resolution, continuity, bounds), ``recording`` (turns and next states to the recorder),
``journal_health`` (whether the journal can record; 503 while it cannot), ``supervisor``
(restarts the embedded engine child),
``codec`` / ``tokenizer_codec`` (rendering and parsing seam), ``auth``, ``metrics``,
``serve`` (the ``slime-openclaw serve`` command). The scripted engine the tests and the
overhead benchmark serve is test support, in ``tests/scripted_engine.py``.
"""
