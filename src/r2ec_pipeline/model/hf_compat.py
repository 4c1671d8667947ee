"""What transformers renamed between the versions we run on, in one place.

The KV cache is ``past_key_values`` (argument and output field) up to transformers 5.2x's rename to
``cache``: our pin has ``cache`` (``past_key_values`` still accepted, with a warning), the GPU image's
transformers 5.17 only ``past_key_values``. Every call that passes or reads a cache goes through here.
"""

from __future__ import annotations

from typing import Any

from transformers import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast

CACHE_FIELD = "cache" if "cache" in BaseModelOutputWithPast.__dataclass_fields__ else "past_key_values"


def with_cache(cache: Cache | None) -> dict[str, Any]:
    """The keyword argument that hands ``cache`` to a forward pass."""
    return {CACHE_FIELD: cache}


def cache_of(output: Any) -> Cache:
    """The KV cache a forward pass with ``use_cache=True`` returned."""
    return getattr(output, CACHE_FIELD)
