"""``slime-openclaw demo``: the personal-agent loop on one CPU machine (command, loop, report)."""
