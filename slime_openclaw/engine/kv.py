"""A causal LM forward pass with a KV cache, under the cache keyword the installed transformers uses.

transformers renamed the model keyword and output field ``past_key_values`` to ``cache``
(5.24 warns that ``past_key_values`` "will be removed in version 5.40.0. Use `cache`
instead."); 5.12, the version slime's pinned SGLang installs, knows only
``past_key_values``. ``forward`` asks the model class which one its ``forward`` takes
(once per class) and passes and reads the cache under that name, so the embedded engine
runs on both without a deprecation path.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

_KEYWORDS: dict[Any, str] = {}


def cache_keyword(model_class: Any) -> str:
    """``"cache"`` when ``model_class.forward`` takes it, else ``"past_key_values"``."""
    keyword = _KEYWORDS.get(model_class)
    if keyword is None:
        parameters = inspect.signature(model_class.forward).parameters
        keyword = _KEYWORDS[model_class] = "cache" if "cache" in parameters else "past_key_values"
    return keyword


def forward(model: Any, cache: Any, **inputs: Any) -> tuple[torch.Tensor, Any]:
    """``model(**inputs)`` extending ``cache`` (None: no cache kept); returns ``(logits, new cache)``."""
    keyword = cache_keyword(type(model))
    use_cache = cache is not None
    out = model(**inputs, **{keyword: cache}, use_cache=use_cache)
    return out.logits, (getattr(out, keyword) if use_cache else None)
