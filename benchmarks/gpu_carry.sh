#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what a GPU session carries to a lent machine: run from the repository root
# after `make setup` and the data pipelines (`kedro run --env gpu --pipelines data`: the tables a GPU run
# trains on are the ones great-expectations validated here). Writes the git-ignored .gpu/ (listed in
# .git/info/exclude):
#   .gpu/whl/    wheels the GPU image lacks (gguf, pydantic and its needs, kedro's pipeline modules and their
#                needs; cp312, manylinux), the GGUF's sha256 and the commit of the tree the calls carry
#   .gpu/data/   data/03_primary and data/05_model_input as the catalog names them (parquet, ~9 MB)
#   .gpu/shape/  SmolLM2's config.json and tokenizer (gpu_session.sh speed: random weights, no GGUF)
#   .gpu/part0/ .gpu/part1/ .gpu/part2/  the SmolLM2 GGUF in three parts
# A call carries the tracked tree (`git ls-files`: ~14 MB with one shipped checkpoint; each checkpoint adds
# 10-25 MB) plus what `carry` names, at most 64 MiB in all; so the parts travel one a call, to /tmp/keep
# (a warm machine's /tmp survives between calls; ignored folders of the tree that carry does not name do
# not), within the machine's 30 s warm window:
#   run(carry [.gpu/part0, .gpu/data]) `mkdir -p /tmp/keep && cp -r .gpu/part0/* .gpu/data /tmp/keep/`
#   run(carry [.gpu/part1])            `cp .gpu/part1/* /tmp/keep/`
#   run(carry [.gpu/whl, .gpu/part2])  `cp .gpu/part2/* /tmp/keep/ && bash benchmarks/gpu_session.sh learn /tmp/keep .gpu/whl`
#       (RUN_PARAMS="sft.resume_from_checkpoint=checkpoints/<name>" resumes a kept checkpoint)
# The speed check needs no GGUF: run(carry [.gpu/whl, .gpu/shape, .gpu/data]) `bash benchmarks/gpu_session.sh speed .gpu/shape .gpu/whl`
set -euo pipefail
python=.venv/bin/python
for table in data/03_primary/interactions.parquet data/05_model_input/train_samples.parquet; do
    [ -f "$table" ] || { echo "$table missing: run .venv/bin/kedro run --env gpu --pipelines data first"; exit 2; }
done
gguf=$($python -c "from r2ec_pipeline.model.backbone import locate_packaged_gguf; print(locate_packaged_gguf())")
grep -qx "/.gpu/" .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo "/.gpu/" >> .git/info/exclude; }
rm -rf .gpu && mkdir -p .gpu/whl .gpu/shape .gpu/part0 .gpu/part1 .gpu/part2 .gpu/data/data
pins=$($python -c "import pydantic, pydantic_core, gguf, kedro, more_itertools, parse
from importlib.metadata import version as v
print(f'pydantic=={pydantic.VERSION} pydantic-core=={pydantic_core.__version__} gguf=={v(\"gguf\")}',
      f'kedro=={kedro.__version__} more-itertools=={v(\"more-itertools\")} parse=={v(\"parse\")}')")
$python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl $pins annotated-types typing-inspection
sha256sum "$gguf" | cut -d' ' -f1 > .gpu/whl/gguf.sha256
# the commit the copied tree is (the machine gets no .git): checkpoints and run.json name it
echo "$(git rev-parse HEAD)$([ -z "$(git status --porcelain --untracked-files=no)" ] || echo +dirty)" > .gpu/whl/commit
cp -r data/03_primary data/05_model_input .gpu/data/data/
find .gpu/data -name .gitkeep -delete
split -n 3 -d "$gguf" .gpu/gguf.part
for i in 0 1 2; do mv ".gpu/gguf.part0$i" ".gpu/part$i/"; done
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
echo "tracked tree: $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) bytes (each call carries it)"
