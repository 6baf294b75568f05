"""What session matching costs per request, and that it does not grow with the open sessions.

One request's session work in the gateway (gateway/recording.py's ``TurnBook.open`` and
``close`` without the journal): digest the history (``History.of``), find its session
(``SessionTable.assign``: one lookup for the reply rule, a few for the reply-dropped rule),
work out the previous turn's next state (``next_state_for``) and fingerprint the served turn
(``PendingTurn.build``, ``SessionTable.complete``). Measured per request for conversations
without session keys (the history is all there is), in two shapes:

* ``agent``: the conversation of benchmarks/gateway_overhead.py (a 5-sentence system prompt,
  four user turns, our replies in between: ~0.6 to 2.5 kB of messages);
* ``openclaw``: OpenClaw's shape, a 44,000-character system prompt and a fresh internal-context
  message at the end of every request that the next one does not replay (~45 kB).

With 1 and with 10,000 other sessions open. For comparison, in the same run, the hashing the
previous rule did per request (reimplemented here: three digests of a whole message list,
for the lookup, the continuity check and the fingerprint; it could not match the openclaw
shape at all, so its figure there is only its cost).

    .venv/bin/python benchmarks/session_matching.py [--conversations 400] [--open 1 10000]
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable

import orjson

from slime_openclaw.gateway.matching import History, PendingTurn, canonical_message, next_state_for
from slime_openclaw.gateway.sessions import SessionTable

TURNS = 4
REPLY = {"role": "assistant", "content": "Sure. The answer is forty-two, and here is a short explanation of why."}
SYSTEM = ("You are a careful assistant working inside a developer's terminal. Answer concisely, cite the files you "
          "read, prefer small reversible steps, and ask before running anything destructive. ")


def conversation(c: int, shape: str) -> list[list[dict]]:
    """The message lists of conversation ``c``'s requests, as the client sends them."""
    system = {"role": "system", "content": SYSTEM * (250 if shape == "openclaw" else 1)}
    kept: list[dict] = [system]
    requests = []
    for k in range(TURNS):
        kept.append({"role": "user", "content": f"Question {k} about project {c}: why does the build rebuild?"})
        context = [{"role": "user", "content": f"<internal context {c}.{k}: no active sessions>"}]
        requests.append(kept + (context if shape == "openclaw" else []))
        kept = [*kept, REPLY]
    return requests


def session_work(table: SessionTable, messages: list[dict], now: float) -> bool:
    """One request's matching and fingerprinting; True when it continued a session."""
    history = History.of(messages)
    assignment, _ = table.assign(history, None, None, now)
    if assignment.previous is not None:
        next_state_for(assignment.previous, history, (), now, check_tokens=False)
    table.complete(assignment.session_id, PendingTurn.build(f"{assignment.session_id}:{assignment.turn_index}",
                                                            history, REPLY, (1, 2, 3)), now)
    return assignment.previous is not None


def previous_rule_work(messages: list[dict]) -> None:
    """The previous rule's hashing: three whole-list digests (lookup, continuity check, fingerprint)."""
    for part in (messages, messages, [*messages, REPLY]):
        orjson_bytes = orjson.dumps([canonical_message(m) for m in part], option=orjson.OPT_SORT_KEYS)
        hashlib.sha256(orjson_bytes).hexdigest()


def measure(work: Callable[[list[dict]], object], requests: list[list[dict]]) -> float:
    """Microseconds per request, turn after turn of every conversation (as clients send them)."""
    start = time.perf_counter()
    for messages in requests:
        work(messages)
    return (time.perf_counter() - start) / len(requests) * 1e6


def run(shape: str, conversations: int, open_sessions: int) -> dict:
    table = SessionTable(ttl=1e9, max_sessions=open_sessions + conversations + 1)
    for i in range(open_sessions):  # other sessions, each with a pending turn
        session_work(table, [{"role": "user", "content": f"background {i}"}], 0.0)
    convs = [conversation(c, shape) for c in range(conversations)]
    requests = [convs[c][k] for k in range(TURNS) for c in range(conversations)]  # interleaved like real load
    continued = [0]

    def ours(messages: list[dict]) -> None:
        continued[0] += session_work(table, messages, 1.0)

    us = measure(ours, requests)
    assert continued[0] == conversations * (TURNS - 1), "every later turn continues its session"
    return {"shape": shape, "open": open_sessions, "us_per_request": us,
            "previous_rule_hashing_us": measure(previous_rule_work, requests),
            "kb_per_request": sum(len(orjson.dumps(r)) for r in requests) / len(requests) / 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--conversations", type=int, default=400)
    parser.add_argument("--open", type=int, nargs="+", default=[1, 10_000], help="other sessions open")
    args = parser.parse_args()
    print(f"{'shape':>9} {'open':>6} {'kB/req':>7} {'matching us/req':>16} {'previous rule hashing us/req':>29}")
    for shape in ("agent", "openclaw"):
        for n in args.open:
            row = run(shape, args.conversations, n)
            print(f"{row['shape']:>9} {row['open']:>6} {row['kb_per_request']:>7.1f} {row['us_per_request']:>16.1f} "
                  f"{row['previous_rule_hashing_us']:>29.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
