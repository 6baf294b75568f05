"""General agents on the embedded default: the policy's pre-training on trajectories, the train/eval loop, the command."""
