#!/usr/bin/env bash
# One-shot GPU benchmark of vpd.py at the Qwen2.5-0.5B shape (random weights, no download). At most 7.5 min (sections
# 1, 3b, 1b); ALL=1 adds sections 2 and 3 (4 min more).
# Usage: bash benchmarks/run_gpu.sh [cuda:N] > gpu_results.md
set -u
DEV=${1:-cuda}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
B="${PYTHON:-python3} benchmarks/bench_vpd.py --preset qwen2.5-0.5b --device $DEV"
nvidia-smi --query-gpu=name,memory.total --format=csv || true
# 1. The default configuration (4 prompts x 8 rollouts x 512 tokens, micro_batch 4, bf16 autocast): all algos,
#    step peak memory (target: <= 24 GB; VPD <= 1.3 x GRPO).
timeout 170 $B --algo vpd,sdpo,grpo --prompts 4 --group-size 8 --new-tokens 512 --prompt-len 128 --feedback-len 384 \
    --steps 2 --micro-batch 4 || echo "run 1 failed or timed out (rc $?)"
# 3b. The default (dynamic cache under bf16 autocast) against --gen-weights bf16 with a static cache and compile, at
#     the issue's size (4 prompts x 8 rollouts x 512 tokens). Bandwidth bound: every decode step reads all weights
#     once (0.99 GB in bf16 for 494M parameters), so tokens/s <= 32 rows x bandwidth / 0.99 GB.
timeout 190 $B --algo none --prompts 4 --group-size 8 --new-tokens 512 --prompt-len 128 --gen-reps 1 \
    --gen-modes dynamic,bf16-dynamic,bf16-static,bf16-static-compile || echo "run 3b failed or timed out (rc $?)"
# 1b. The same VPD step with larger logit chunks (--logit-chunk MB; the default 24 MB suits a CPU's caches).
timeout 70 $B --algo vpd --prompts 4 --group-size 8 --new-tokens 512 --prompt-len 128 --feedback-len 384 \
    --steps 1 --micro-batch 4 --logit-chunk 512 --skip-generation || echo "run 1b failed or timed out (rc $?)"
if [ "${ALL:-0}" = 1 ]; then
# 2. M-step memory vs the naive full-vocab reference, micro_batch 1/2/4 (16 sequences x 256 tokens).
timeout 90 $B --algo vpd --prompts 2 --group-size 8 --new-tokens 256 --prompt-len 32 --feedback-len 32 --steps 1 \
    --micro-batch 4,2,1 --naive || echo "run 2 failed or timed out (rc $?)"
# 3. Generation options: dynamic cache (vpd.py today), one call per prompt, static cache, static cache + compile.
timeout 150 $B --algo none --prompts 4 --group-size 8 --new-tokens 256 --prompt-len 128 --gen-reps 1 \
    --gen-modes dynamic,per-prompt,static,static-compile || echo "run 3 failed or timed out (rc $?)"
fi
