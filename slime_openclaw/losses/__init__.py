"""Loss math as pure torch: PPO clip, advantages (binary, OPD, combined), top-K reverse KL, importance-ratio truncation. No slime or Megatron import."""
