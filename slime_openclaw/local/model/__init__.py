"""The tiny-model factory of the embedded default: a seeded Qwen2-architecture checkpoint and its tokenizer."""
