"""The base of every parameter model and the error that names a bad parameter."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigError(ValueError):
    """A parameter is missing, unknown or out of range; the message names it."""


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _describe(block: str, error: ValidationError) -> str:
    """One ``parameter '<block>.<field>': <problem> (got <value>)`` clause per pydantic error."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in (block, *item["loc"]))
        got = f" (got {item['input']!r})" if item["loc"] and item.get("type") != "missing" and "input" in item else ""
        lines.append(f"parameter '{where}': {item['msg']}{got}")
    return "; ".join(lines)
