"""The ``slime-openclaw`` command: a registry of subcommands.

Each subcommand lives with the code it drives and exposes ``add_arguments(parser)`` and
``run(args) -> int``; this module only wires them up and turns expected errors into one
line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from slime_openclaw import __version__
from slime_openclaw.errors import ConfigError, OpenClawError

# name -> (module implementing it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("slime_openclaw.gateway.serve", "OpenAI-compatible gateway in front of an engine"),
    "engine": ("slime_openclaw.engine.server", "embedded engine (SGLang protocol subset) for a local checkpoint"),
    "tiny-model": ("slime_openclaw.local.model.tiny_model", "write a tiny Qwen2-architecture checkpoint"),
    "prepare-policy": ("slime_openclaw.local.personal.pretrain", "pre-train the tiny policy on synthetic dialogues (cached)"),
    "demo": ("slime_openclaw.local.demo.command", "the whole loop on one CPU machine with simulated users"),
    "agents": ("slime_openclaw.local.agents.command", "general agents: list environments, evaluate, train"),
    "launch": ("slime_openclaw.slime.launch", "compose and run a slime job with a recipe"),
    "journal": ("slime_openclaw.journal.cli", "inspect and export the durable journal"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; only ``command``'s module is imported (the others may pull in torch)."""
    parser = argparse.ArgumentParser(prog="slime-openclaw", description="Train any agent from its live traffic.")
    parser.add_argument("--version", action="version", version=f"slime-openclaw {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except ConfigError as exc:
        print(f"slime-openclaw {args.command}: {exc.message}", file=sys.stderr)
        return 2
    except OpenClawError as exc:
        print(f"slime-openclaw {args.command}: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"slime-openclaw {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
