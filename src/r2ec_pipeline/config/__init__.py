"""Typed parameters of every pipeline, checked before any node runs.

Each pipeline reads one top-level block of ``conf/base/parameters_<pipeline>.yml``; the models (in
``data``, ``training`` and ``release``) say what each field means and which section of the method
(``docs/method.md``) it comes from, and are the one source of every default: plain-PyTorch code takes
the models themselves. ``validate_parameters`` turns a pydantic error into one message that names the
parameter.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from r2ec_pipeline.config.base import ConfigError, _describe, _Params
from r2ec_pipeline.config.data import (
    DEFAULT_ITEM_INSTRUCTION,
    DEFAULT_USER_INSTRUCTION,
    AmazonParams,
    IngestionParams,
    PromptParams,
    ValidationParams,
)
from r2ec_pipeline.config.release import (
    ABLATION_VARIANTS,
    AblationParams,
    BaselinesParams,
    CatalogUpdateParams,
    ColdStartParams,
    EvaluationParams,
    RegistrationParams,
    SASRecParams,
)
from r2ec_pipeline.config.training import (
    METRIC_NAMES,
    AdapterParams,
    ModelParams,
    RecPOParams,
    SFTParams,
)

__all__ = [
    "ABLATION_VARIANTS",
    "DEFAULT_ITEM_INSTRUCTION",
    "DEFAULT_USER_INSTRUCTION",
    "METRIC_NAMES",
    "PARAMETER_MODELS",
    "AblationParams",
    "AdapterParams",
    "AmazonParams",
    "BaselinesParams",
    "CatalogUpdateParams",
    "ColdStartParams",
    "ConfigError",
    "EvaluationParams",
    "IngestionParams",
    "ModelParams",
    "PromptParams",
    "RecPOParams",
    "RegistrationParams",
    "SASRecParams",
    "SFTParams",
    "ValidationParams",
    "parse_block",
    "validate_parameters",
]

PARAMETER_MODELS: dict[str, type[_Params]] = {
    "data_ingestion": IngestionParams,
    "data_validation": ValidationParams,
    "prompts": PromptParams,
    "model": ModelParams,
    "sft": SFTParams,
    "recpo": RecPOParams,
    "baselines": BaselinesParams,
    "evaluation": EvaluationParams,
    "registration": RegistrationParams,
    "ablations": AblationParams,
    "catalog_update": CatalogUpdateParams,
    "cold_start": ColdStartParams,
}


def parse_block(block: str, values: dict[str, Any] | None) -> Any:
    """Validate one parameter block and return its typed model; raise ``ConfigError`` naming the field."""
    model = PARAMETER_MODELS[block]
    try:
        return model.model_validate(values or {})
    except ValidationError as error:
        raise ConfigError(_describe(block, error)) from None


def validate_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Check every known block of a Kedro ``params`` dict; collect all problems into one error."""
    problems, typed = [], {}
    for block in PARAMETER_MODELS:
        if block not in params:
            problems.append(f"parameter block '{block}' is missing (expected in parameters_{block}.yml)")
            continue
        try:
            typed[block] = parse_block(block, params[block])
        except ConfigError as error:
            problems.append(str(error))
    if not problems and "model" in typed and "sft" in typed:
        sft = typed["sft"]
        if typed["model"].gradient_checkpointing and sft.engine == "batched" and sft.share_prefix:
            problems.append(
                f"model.gradient_checkpointing: true cannot run with sft.share_prefix: {sft.share_prefix} (engine "
                "batched: HF drops the shared prefix's KV cache under checkpointing); set one of them off"
            )
    if not problems and "ablations" in typed:
        for variant in ABLATION_VARIANTS:  # each variant's merged recpo block must be valid too
            try:
                typed["ablations"].recpo_block(params["recpo"], variant)
            except ConfigError as error:
                problems.append(str(error))
    if problems:
        raise ConfigError("invalid parameters: " + "; ".join(problems))
    return typed
