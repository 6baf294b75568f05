"""Personal agents on the embedded default: simulated users, their scorer, and the policy's pre-training."""
