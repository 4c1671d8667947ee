#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what a GPU session carries to a lent machine: run from the repository root
# after `make setup`. Writes the git-ignored .gpu/ (listed in .git/info/exclude):
#   .gpu/whl/    wheels the GPU image lacks (gguf, pydantic and its needs; cp312, manylinux), the recbole
#                wheel (ML-100k inside) and the GGUF's sha256
#   .gpu/shape/  SmolLM2's config.json and tokenizer (gpu_session.sh speed: random weights, no GGUF)
#   .gpu/half1/, .gpu/half2/  the SmolLM2 GGUF in two halves (at most 64 MiB travel a call)
# Then, within the machine's 30 s warm window (files outside the working tree, like /tmp, survive between calls;
# ignored folders of the tree that carry does not name do not):
#   run(carry [.gpu/whl, .gpu/shape, .gpu/half1]) `mkdir -p /tmp/keep && cp .gpu/half1/* /tmp/keep/ &&
#       SPEED_SECONDS=95 SPEED_ARGS="--train-samples 2000 --repeats 2 --tokens 32 --rows 943" \
#       bash benchmarks/gpu_session.sh speed .gpu/shape .gpu/whl`
#   run(carry [.gpu/whl, .gpu/half2]) `bash benchmarks/gpu_session.sh learn /tmp/keep/gguf.part00 .gpu/half2/gguf.part01 .gpu/whl`
set -euo pipefail
python=.venv/bin/python
gguf=$($python -c "from r2ec_pipeline.model.backbone import locate_packaged_gguf; print(locate_packaged_gguf())")
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.gpu/" >> .git/info/exclude; }
rm -rf .gpu && mkdir -p .gpu/whl .gpu/shape .gpu/half1 .gpu/half2
pins=$($python -c "import pydantic, pydantic_core, gguf; from importlib.metadata import version as v
print(f'pydantic=={pydantic.VERSION} pydantic-core=={pydantic_core.__version__} gguf=={v(\"gguf\")}')")
$python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl $pins annotated-types typing-inspection
cp data/01_raw/recbole-1.2.1-py3-none-any.whl .gpu/whl/
sha256sum "$gguf" | cut -d' ' -f1 > .gpu/whl/gguf.sha256
split -n 2 -d "$gguf" .gpu/gguf.part && mv .gpu/gguf.part00 .gpu/half1/ && mv .gpu/gguf.part01 .gpu/half2/
$python - <<'PY'
import shutil
from pathlib import Path
from r2ec_pipeline.model.backbone import PACKAGED_SMOLLM2, backbone_folder
folder = backbone_folder(PACKAGED_SMOLLM2, "data/06_models/backbones")
for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
    if (folder / name).is_file():
        shutil.copy(folder / name, Path(".gpu/shape") / name)
PY
du -sh .gpu/*
