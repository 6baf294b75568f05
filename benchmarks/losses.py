"""Benchmark: ``topk_reverse_kl`` against the naive K-copies top-K distillation loss.

What is compared (forward + backward, per-token loss summed, float32 logits [T, V],
teacher top-K [T, K], T=4096, K=50 by default):

- ``ours``: ``slime_openclaw.losses.topk_reverse_kl`` (one gather of the logits at the
  teacher ids, row-chunked log-sum-exp, analytic chunked backward).
- ``naive``: the K-copies approach the reference system's defect 9 describes, written
  here for comparison (not the reference's code): the temperature-scaled logits are
  expanded to [T, K, V] and log-softmaxed, i.e. one full copy of each row per top-K bin,
  then gathered; autograd keeps the [T, K, V] copy for the backward.

How it is measured (CPU, honest about the method):

- Memory: each variant runs once in a fresh subprocess with glibc's mmap threshold
  pinned to 64 KiB (``MALLOC_MMAP_THRESHOLD_``), so every large tensor is its own
  mapping that returns to the OS when freed. After building the inputs, the child
  resets its peak RSS (``/proc/self/clear_refs`` = 5) and records its RSS; after the
  run it reads the peak (``VmHWM``). "Peak extra" = peak RSS - RSS before: everything the
  loss allocated, *including* the [T, V] logits gradient that any method must return
  (its size is printed separately). Page-granular, includes allocator overhead.
- With ``--device cuda`` (the default when CUDA is available) the children use
  ``torch.cuda.max_memory_allocated`` - ``memory_allocated`` before the run instead.
- Time: median wall time of ``--repeats`` forward+backward runs after one warm-up, in
  a separate child with the default allocator (the pinned mmap threshold of the memory
  child adds page faults that would distort the timing). On a shared machine, wall
  times are noisy; ``--threads 1`` avoids thread oversubscription.
- The naive method needs about 3 * T*K*V*4 bytes; if that exceeds ``--budget-gib`` the
  vocabulary is halved until it fits, and the V used is printed. ``ours`` is also run
  alone at the requested V.

Run: ``.venv/bin/python benchmarks/losses.py`` (``--help`` for sizes). Exit status 1 if
the two methods disagree on the loss or ours misses the targets (>= 10x less extra
memory, faster).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any

import torch

from slime_openclaw.losses import topk_reverse_kl

MIB = 1 << 20


def naive_topk_reverse_kl(
    logits: torch.Tensor, teacher_lp: torch.Tensor, teacher_ids: torch.Tensor, temperature: float
) -> torch.Tensor:
    """The K-copies baseline: a log-softmax of the whole row per top-K bin ([T, K, V])."""
    rows, k = teacher_ids.shape
    copies = (logits / temperature).unsqueeze(1).expand(rows, k, logits.size(1))
    student = torch.log_softmax(copies, dim=-1).gather(-1, teacher_ids.unsqueeze(-1)).squeeze(-1)
    student_tail = torch.log(-torch.expm1(torch.logsumexp(student, -1).clamp(max=-1e-7)))
    teacher_tail = torch.log(torch.clamp(-torch.expm1(torch.logsumexp(teacher_lp, -1)), min=1e-6))
    s = torch.cat([student, student_tail.unsqueeze(-1)], dim=-1)
    t = torch.cat([teacher_lp, teacher_tail.unsqueeze(-1)], dim=-1)
    return (s.exp() * (s - t)).sum(-1)


def make_inputs(tokens: int, vocab: int, k: int, temperature: float, device: str, seed: int = 0):
    """Student logits and a teacher's top-K at ``temperature``, built in row chunks."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, vocab, generator=gen) * 3
    teacher_lp = torch.empty(tokens, k)
    teacher_ids = torch.empty(tokens, k, dtype=torch.long)
    for start in range(0, tokens, 256):
        rows = slice(start, start + 256)
        teacher = logits[rows] + torch.randn(logits[rows].shape, generator=gen)
        teacher_lp[rows], teacher_ids[rows] = torch.log_softmax(teacher / temperature, -1).topk(k, -1)
    return logits.to(device).requires_grad_(True), teacher_lp.to(device), teacher_ids.to(device)


def _proc_status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"{field} missing from /proc/self/status")
    return int(match.group(1))


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Run one variant in this (fresh) process: one measured run for memory, or timed runs."""
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    fn = topk_reverse_kl if args.variant == "ours" else naive_topk_reverse_kl
    logits, teacher_lp, ids = make_inputs(args.tokens, args.vocab, args.topk, args.temperature, args.device)
    cuda = args.device.startswith("cuda")

    def step() -> tuple[float, float]:
        loss = fn(logits, teacher_lp, ids, args.temperature).sum()
        (grad,) = torch.autograd.grad(loss, logits)
        if cuda:
            torch.cuda.synchronize()
        return loss.item(), grad.norm().item()

    if args.measure == "memory":
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            _reset_peak_rss()
            base = _proc_status_kib("VmRSS") * 1024
        loss_sum, grad_norm = step()
        peak = torch.cuda.max_memory_allocated() if cuda else _proc_status_kib("VmHWM") * 1024
        return {"extra_bytes": peak - base, "loss": loss_sum, "grad_norm": grad_norm}
    step()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    return {"ms": statistics.median(times)}


def run_child(variant: str, vocab: int, args: argparse.Namespace) -> dict[str, Any]:
    """Memory in one child (malloc pinned to mmap), time in another (default malloc)."""
    figures: dict[str, Any] = {}
    for measure in ("memory", "time"):
        cmd = [sys.executable, __file__, "--child", variant, "--measure", measure, "--vocab", str(vocab)]
        cmd += [
            "--tokens",
            str(args.tokens),
            "--topk",
            str(args.topk),
            "--temperature",
            str(args.temperature),
        ]
        cmd += ["--repeats", str(args.repeats), "--device", args.device, "--threads", str(args.threads)]
        env = dict(os.environ)
        if measure == "memory":
            env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
        done = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


def naive_bytes(tokens: int, k: int, vocab: int) -> int:
    return 3 * tokens * k * vocab * 4


def fitting_vocab(args: argparse.Namespace) -> int:
    vocab = args.vocab
    while vocab > 256 and naive_bytes(args.tokens, args.topk, vocab) > args.budget_gib * (1 << 30):
        vocab //= 2
    return vocab


def report(args: argparse.Namespace) -> int:
    vocab = fitting_vocab(args)
    grad_mib = args.tokens * vocab * 4 / MIB
    threads = args.threads or torch.get_num_threads()
    print(
        f"top-K reverse KL, forward+backward, T={args.tokens} K={args.topk} V={vocab} float32, "
        f"{args.device}, {threads} thread(s), median of {args.repeats}"
    )
    if vocab != args.vocab:
        need = naive_bytes(args.tokens, args.topk, args.vocab) / (1 << 30)
        print(
            f"(naive at V={args.vocab} would need ~{need:.0f} GiB > budget {args.budget_gib} GiB; V halved to fit)"
        )
    ours, naive = run_child("ours", vocab, args), run_child("naive", vocab, args)
    print(f"{'method':<8}{'time ms':>12}{'peak extra MiB':>18}")
    for name, fig in (("naive", naive), ("ours", ours)):
        print(f"{name:<8}{fig['ms']:>12.1f}{fig['extra_bytes'] / MIB:>18.1f}")
    mem_ratio = naive["extra_bytes"] / max(ours["extra_bytes"], 1)
    speedup = naive["ms"] / ours["ms"]
    print(f"ratio naive/ours: memory {mem_ratio:.1f}x, time {speedup:.1f}x")
    print(f"(the [T, V] logits gradient both must return is {grad_mib:.1f} MiB of each peak)")
    agree = abs(ours["loss"] - naive["loss"]) <= 1e-3 * max(1.0, abs(naive["loss"]))
    print(f"loss sum ours={ours['loss']:.4f} naive={naive['loss']:.4f} ({'agree' if agree else 'DISAGREE'})")
    if vocab != args.vocab:
        full = run_child("ours", args.vocab, args)
        print(
            f"ours alone at V={args.vocab}: {full['ms']:.1f} ms, peak extra {full['extra_bytes'] / MIB:.1f} MiB "
            f"(of which gradient {args.tokens * args.vocab * 4 / MIB:.1f} MiB)"
        )
    return 0 if agree and mem_ratio >= 10 and speedup > 1 else 1


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--topk", type=int, default=50)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-gib", type=float, default=6.0, help="memory the naive run may use")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--child", choices=("ours", "naive"), dest="variant", help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("memory", "time"), default="time", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    if args.variant:
        print(json.dumps(child(args)))
        return 0
    return report(args)


if __name__ == "__main__":
    sys.exit(main())
