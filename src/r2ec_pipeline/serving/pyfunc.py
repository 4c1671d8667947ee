"""The R²ec model as an MLflow pyfunc: raw item ids in, top-K items with titles, scores and reasoning out.

Request rows (a pandas DataFrame, or JSON ``{"inputs": [...]}`` when served):
``history_item_ids`` (raw ids, oldest first), optional ``history_ratings`` and ``history_timestamps``
(Unix seconds, same length), optional ``k``. Bad rows raise ``MlflowException`` with
INVALID_PARAMETER_VALUE, which ``mlflow models serve`` answers with HTTP 400 and the message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types.schema import Array, ColSpec, Schema

SIGNATURE = ModelSignature(
    inputs=Schema(
        [
            ColSpec(Array("string"), "history_item_ids"),
            ColSpec(Array("double"), "history_ratings", required=False),
            ColSpec(Array("long"), "history_timestamps", required=False),
            ColSpec("long", "k", required=False),
        ]
    ),
    outputs=Schema(
        [
            ColSpec(Array("string"), "item_ids"),
            ColSpec(Array("string"), "titles"),
            ColSpec(Array("double"), "scores"),
            ColSpec("string", "reasoning"),
        ]
    ),
)


@dataclass(frozen=True)
class ServingSettings:
    """How a request becomes a prompt and how many items may be asked for (saved as ``serving.json``)."""

    user_instruction: str
    window_size: int
    max_user_prompt_tokens: int
    reasoning_tokens: int
    default_k: int
    max_k: int
    backbone_uri: str = ""  # the backbone's folder in the MLflow store (serving.backbone_store), once per content
    backbone_sha256: str = ""


@dataclass(frozen=True)
class Request:
    """One validated request row, in the model's internal item ids."""

    item_ids: list[int]
    ratings: list[float] | None
    timestamps: list[int] | None
    k: int


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_list(value: Any) -> list | None:
    return None if _missing(value) else list(value)


def parse_request(row: dict[str, Any], ids: dict[str, int], settings: ServingSettings, index: int) -> Request:
    """Check one row; the error names the row and the problem (empty history, unknown ids, k, lengths)."""

    def bad(message: str) -> MlflowException:
        return MlflowException.invalid_parameter_value(f"request row {index}: {message}")

    raw = _as_list(row.get("history_item_ids"))
    if not raw:
        raise bad("history_item_ids is empty: give at least one item the user interacted with")
    unknown = [str(item) for item in raw if str(item) not in ids]
    if unknown:
        raise bad(f"unknown item ids {unknown[:10]} (not in the model's catalog of {len(ids)} items)")
    ratings, stamps = _as_list(row.get("history_ratings")), _as_list(row.get("history_timestamps"))
    for name, values in (("history_ratings", ratings), ("history_timestamps", stamps)):
        if values is not None and len(values) != len(raw):
            raise bad(f"{name} has {len(values)} values for {len(raw)} history items")
    k = row.get("k")
    k = settings.default_k if _missing(k) else k
    if int(k) != k or not 1 <= int(k) <= settings.max_k:
        raise bad(f"k must be an integer in 1..{settings.max_k}, got {k}")
    return Request(
        [ids[str(item)] for item in raw],
        None if ratings is None else [float(r) for r in ratings],
        None if stamps is None else [int(t) for t in stamps],
        int(k),
    )


class R2ecPyfunc(PythonModel):
    """Artifacts: ``checkpoint`` (dual-head folder), ``items`` (parquet), ``serving`` (settings, with the URI
    and hash of the backbone, stored once in the MLflow store); versions logged before that carry ``backbone``."""

    def load_context(self, context) -> None:
        from r2ec_pipeline.model.dual_head_io import load_dual_head
        from r2ec_pipeline.serving.backbone_store import fetch_backbone

        artifacts = context.artifacts
        self.settings = ServingSettings(**json.loads(Path(artifacts["serving"]).read_text()))
        backbone = (
            str(fetch_backbone(self.settings.backbone_uri, self.settings.backbone_sha256))
            if self.settings.backbone_uri
            else artifacts["backbone"]
        )
        items = pd.read_parquet(artifacts["items"])
        self.ids = dict(zip(items["raw_item_id"].astype(str), items["item_id"].astype(int), strict=True))
        self.raw_ids = dict(zip(items["item_id"].astype(int), items["raw_item_id"].astype(str), strict=True))
        self.titles = dict(zip(items["item_id"].astype(int), items["title"].astype(str), strict=True))
        self.model = load_dual_head(artifacts["checkpoint"], backbone, backbone=backbone)
        self.model.lm.eval()

    def prompt(self, request: Request) -> str:
        """The user prompt exactly as the prompts stage renders it, from the latest ``window_size`` items."""
        from r2ec_pipeline.data.prompting import fit_user_prompt, history_lines

        window = slice(-self.settings.window_size, None)
        stamps = request.timestamps[window] if request.timestamps else None
        lines = history_lines(
            request.item_ids[window],
            request.ratings[window] if request.ratings else None,
            stamps,
            max(request.timestamps) if request.timestamps else None,
            self.titles,
        )
        return fit_user_prompt(
            self.model.tokenizer, self.settings.user_instruction, lines, self.settings.max_user_prompt_tokens
        )[0]

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch

        from r2ec_pipeline.model.generation import generate_reasoning
        from r2ec_pipeline.model.scoring import top_k

        rows = model_input.to_dict(orient="records") if isinstance(model_input, pd.DataFrame) else list(model_input)
        requests = [parse_request(row, self.ids, self.settings, index) for index, row in enumerate(rows)]
        prompts = [self.prompt(request) for request in requests]
        with torch.no_grad():
            if self.settings.reasoning_tokens > 0:
                generation = generate_reasoning(self.model, prompts, self.settings.reasoning_tokens)
                states, texts = generation.final_hidden, generation.texts
            else:
                states, texts = self.model.encode(self.model.user_texts(prompts)), [""] * len(prompts)
            scores = self.model.score(states, [request.item_ids for request in requests])
            best, values = top_k(scores, max(request.k for request in requests))
        output = []
        for row, request in enumerate(requests):
            ids = best[row, : request.k].tolist()
            output.append(
                {
                    "item_ids": [self.raw_ids[i] for i in ids],
                    "titles": [self.titles[i] for i in ids],
                    "scores": np.round(values[row, : request.k].cpu().numpy().astype(float), 6).tolist(),
                    "reasoning": texts[row],
                }
            )
        return pd.DataFrame(output, columns=["item_ids", "titles", "scores", "reasoning"])
