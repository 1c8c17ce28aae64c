"""Seconds per step and peak RSS of TRL's SDPOTrainer on the same model and sizes as bench_vpd.py (the reference
point of benchmarks/RESULTS.md). TRL is not a dependency of this project: run it from a scratch environment,

    python -m venv /tmp/trlvenv --system-site-packages && /tmp/trlvenv/bin/pip install trl==1.16.0
    /tmp/trlvenv/bin/python benchmarks/bench_trl.py --prompts 2 --group-size 8 --new-tokens 256 --micro-batch 4

Model: bench_vpd.py's randomly initialised Qwen2 preset (tiny-bigvocab: 2 layers, hidden 64, the 151,936-token Qwen
vocabulary) with the tiny tokenizer. One optimizer step = one generation batch of prompts x group-size rollouts
forced to exactly --new-tokens tokens (min_new_tokens), micro-batches of --micro-batch sequences with gradient
accumulation over the whole batch, logit-level distillation on the student's top-k (+ tail bucket), alpha 1, a live
teacher (the student's own weights) prompted with a successful sibling and the environment feedback. Half of each
group succeeds (synthetic reward), every rollout has feedback. Prints the seconds of every step (the last one is the
measurement; the first allocates AdamW state) and the process's peak RSS (ru_maxrss).
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

import bench_vpd  # noqa: E402

WORDS = "the answer is wrong you gave no answer apples cost dollars each correct solution feedback".split()


class StepTimer(TrainerCallback):
    def __init__(self):
        self.t0, self.seconds = None, []

    def on_step_begin(self, args, state, control, **kw):
        self.t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        self.seconds.append(time.perf_counter() - self.t0)
        print(f"TRL SDPOTrainer step {len(self.seconds)}: {self.seconds[-1]:.1f} s", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="tiny-bigvocab", choices=list(bench_vpd.PRESETS))
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--new-tokens", type=int, default=256)
    p.add_argument("--prompt-words", type=int, default=24, help="words of the prompt (about 32 tokens with the "
                   "chat template)")
    p.add_argument("--feedback-words", type=int, default=24, help="words of the environment feedback")
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--topk", type=int, default=20)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    import trl
    from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

    ns = argparse.Namespace(hidden=None, layers=None, vocab=None)
    model, tok = bench_vpd.build(args.preset, args.seed, torch.device("cpu"), ns)
    tok.padding_side = "left"
    n_batch = args.prompts * args.group_size
    rows = []
    for i in range(args.prompts * args.steps):
        words = [WORDS[(i * 7 + j) % len(WORDS)] for j in range(args.prompt_words + args.feedback_words)]
        rows.append({"prompt": [{"role": "user", "content": " ".join(words[:args.prompt_words])}],
                     "privileged_context": " ".join(words[args.prompt_words:])})

    def half_succeed(completions, **kw):   # groups are contiguous: every other rollout of a group succeeds
        return [float(i % 2 == 0) for i in range(len(completions))]

    cfg = SDPOConfig(output_dir="/tmp/bench_trl_out", use_cpu=True, bf16=False, report_to=[], save_strategy="no",
                     logging_steps=1, max_steps=args.steps, learning_rate=1e-6, seed=args.seed,
                     per_device_train_batch_size=args.micro_batch, num_generations=args.group_size,
                     generation_batch_size=n_batch, gradient_accumulation_steps=n_batch // args.micro_batch,
                     max_completion_length=args.new_tokens, temperature=1.0, top_p=1.0,
                     generation_kwargs={"min_new_tokens": args.new_tokens},
                     distillation_mode="topk_logits", distillation_topk=args.topk, distillation_add_tail=True,
                     distillation_alpha=1.0, teacher_model_kind="live", include_environment_feedback=True,
                     use_successful_as_teacher=True, dataloader_num_workers=0, shuffle_dataset=False)
    timer = StepTimer()
    trainer = SDPOTrainer(model=model, reward_funcs=half_succeed, args=cfg, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, callbacks=[timer])
    print(f"# bench_trl: trl {trl.__version__}, torch {torch.__version__}, CPU {torch.get_num_threads()} threads; "
          f"{args.preset}: vocab {model.config.vocab_size}, {args.prompts} prompts x {args.group_size} rollouts x "
          f"{args.new_tokens} tokens, micro-batch {args.micro_batch}, top-{args.topk} + tail, alpha 1, live teacher")
    t0 = time.time()
    trainer.train()
    print(f"TRL SDPOTrainer: last step {timer.seconds[-1]:.1f} s; peak RSS (ru_maxrss) "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB; total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
