"""Outside agent harnesses (mini-swe-agent, OpenClaw) run unmodified against the gateway.

One episode of a harness: the task's workspace is prepared in a directory of its own
(``workspace``), the harness works there with the gateway as its OpenAI-compatible model
and ``X-Session-Id: <session id>`` on every request (``mini_swe``, ``openclaw``), its work
is graded as an environment episode would be (``workspace``: swe hidden tests in a clean
copy, terminal checks in a fresh sandbox), and the outcome is posted to the session
(``gateway``). ``command`` is ``slime-openclaw agents harness``.
"""
