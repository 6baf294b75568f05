"""The processes benchmarks/gateway_overhead.py puts between its load generator and the engine.

children.py: the engine (SGLang ``/generate`` and an OpenAI-compatible face), the gateway
(one process, or several sharing a port and the journal) and the byte relay (over the
gateway's HTTP client or a tuned library client). peer.py: LiteLLM's proxy, the peer.
"""
