"""Variational Policy Distillation (VPD): RL for language models from language feedback.

The student pi_theta(y|x) answers; the environment scores the answer and says what went wrong. The teacher
q_theta(y|x, C) is the *same network* prompted with that feedback C. Each step the M-step distils the teacher into
the student on the student's own rollouts, token by token; every F steps the E-step teaches the teacher to read
feedback (BCO against the student as prior, inside a trust region). Baselines in the same loop: SDPO and GRPO.
docs/algorithm.md is the algorithm (§ and pitfall numbers below). Top to bottom: equations, knobs, sampling,
rollouts, M-step, E-step, GRPO, evaluation, the loop, setup. plumbing.py: models, devices, processes, run dirs.

    python vpd.py --model Qwen2.5-0.5B --task code          # train
    python vpd.py --model tiny --task toy                     # CPU demo (a few minutes); README: more
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

import plumbing
import tasks as tasks_lib
from plumbing import (UserError, all_max, all_sum, arg, autocast, backward_by_chunks, clip_gradients,
                      completion_hidden, completion_logits, entropy_positions, global_share, head_logits, lockstep,
                      micro_batches, pad_left, pad_right, position_chunks, vocab_size)


# ================================================================================================================
# The equations: small pure functions, each tested on hand-made tensors
# ================================================================================================================
def completion_mask(tokens: torch.Tensor, eos: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """mask[i, t] = 1 for t <= first EOS of row i (all of the row when it has none = truncated).
    Built from positions, never from `token == pad` (Qwen's pad is an EOS id; pitfall 1). Returns (mask, truncated)."""
    is_eos = torch.isin(tokens, torch.tensor(eos, device=tokens.device))
    has = is_eos.any(1)
    length = torch.where(has, is_eos.int().argmax(1) + 1, tokens.shape[1])
    return torch.arange(tokens.shape[1], device=tokens.device)[None] < length[:, None], ~has


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(y_t) = z[y_t] - logsumexp(z), without materialising the full log-softmax."""
    return logits.gather(-1, tokens[..., None]).squeeze(-1) - logits.logsumexp(-1)


def support_logprobs(logits: torch.Tensor, idx: torch.Tensor | None, tail: bool) -> torch.Tensor:
    """Log-probs on the distillation support (§5). idx None: the full vocabulary. Else the top-k indices (the
    student's): log-probs normalised over the full vocabulary *before* the gather, then either a tail bucket
    log(1 - sum_k p) appended (k+1 entries summing to one) or the k entries renormalised."""
    if idx is None:
        return logits.log_softmax(-1)
    lse = logits.logsumexp(-1, keepdim=True)
    lp = logits.gather(-1, idx) - lse
    if not tail:
        return lp - lp.logsumexp(-1, keepdim=True)
    # log(1 - sum_k p) = logsumexp(logits outside the top-k) - logsumexp(all): no cancellation when the tail is tiny
    # (1 - sum_k p in fp32 is rounding noise below ~1e-7). Floored at -1e4: an empty tail (k = V) gives 0 * finite.
    tail_lp = (logits.scatter(-1, idx, float("-inf")).logsumexp(-1, keepdim=True) - lse).clamp(min=-1e4)
    return torch.cat([lp, tail_lp], -1)


def kl(p_lp: torch.Tensor, q_lp: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_v p_v (log p_v - log q_v) over the last dim, from log-probs."""
    return F.kl_div(q_lp, p_lp, log_target=True, reduction="none").sum(-1)


def divergence(s_lp: torch.Tensor, t_lp: torch.Tensor, alpha: float) -> torch.Tensor:
    """Per-token D(student || teacher) (§5): alpha=0 KL(teacher||student), alpha=1 KL(student||teacher), else the
    generalized JSD with M = (1-alpha) s + alpha t: D = (1-alpha) KL(s||M) + alpha KL(t||M)."""
    if alpha == 0:
        return kl(t_lp, s_lp)
    if alpha == 1:
        return kl(s_lp, t_lp)
    m_lp = torch.logsumexp(torch.stack([s_lp + math.log(1 - alpha), t_lp + math.log(alpha)]), 0)
    return (1 - alpha) * kl(s_lp, m_lp) + alpha * kl(t_lp, m_lp)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H = logsumexp(z) - sum_v softmax(z)_v z_v per position."""
    return logits.logsumexp(-1) - (logits.softmax(-1) * logits).sum(-1)


def bco_loss(logq: torch.Tensor, logp: torch.Tensor, success: torch.Tensor, beta: float, delta: float):
    """E-step (§4): r~ = beta (log q(y|x,C) - sg log pi(y|x)) (sums over y's tokens);
    L = mean[-s log sigmoid(r~ - delta) - (1 - s) log sigmoid(-(r~ - delta))]. Returns (loss, r~ detached)."""
    r = beta * (logq - logp.detach())
    z = r - delta
    loss = -(success * F.logsigmoid(z) + (1 - success) * F.logsigmoid(-z)).mean()
    return loss, r.detach()


def delta_update(total: float, count: float, rewards: torch.Tensor) -> tuple[float, float]:
    """BCO's shift delta = total / count, the running mean of r~ weighted by rollouts: a micro-batch's r~ are taken
    in *before* its loss uses delta (as TRL's BCO does per batch), so no extra pass is needed."""
    return total + rewards.sum().item(), count + rewards.numel()


def next_e_lr(lr: float, move: float, target: float, scale: float, bounds: tuple[float, float],
              rate: float = 1.5) -> float:
    """The trust region's controller (§4): after an E-step whose update was kept at `scale` of its full size (the
    line search) and moved the teacher by `move` per token, the next E-step's lr is
    clip(lr * scale / f, *bounds), f = rate above 1.5 x target, 1 / rate below target / 1.5, else 1. A reading that
    is not finite leaves lr as it is."""
    if not (math.isfinite(move) and math.isfinite(scale)):
        return lr
    f = rate if move > 1.5 * target else 1 / rate if move < target / 1.5 else 1.0
    return min(max(lr * scale / f, bounds[0]), bounds[1])


def kl_k3(logp: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """Per-token non-negative estimate of KL(pi || q) on tokens sampled from pi: (q/pi - 1) - log(q/pi)."""
    d = logq - logp
    return d.exp() - 1 - d


def group_advantages(rewards: torch.Tensor, group_size: int, std_norm: bool, eps: float = 1e-6) -> torch.Tensor:
    """GRPO (§7): A = r - mean_group(r), optionally / (std_group(r) + eps)."""
    r = rewards.view(-1, group_size)
    a = r - r.mean(1, keepdim=True)
    if std_norm:
        a = a / (r.std(1, keepdim=True) + eps)
    return a.flatten()


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c successes: 1 - C(n-c, k) / C(n, k)."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, tau: float) -> None:
    """theta_T <- (1 - tau) theta_T + tau theta (pitfall 8)."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.lerp_(s.detach(), tau)


# The teacher's context (§2): C = an optional successful sibling + optional feedback, then the instruction.
SOLUTION_TEMPLATE = "\nCorrect solution:\n\n{sibling}\n\n"
FEEDBACK_TEMPLATE = "\nThe following is feedback from your unsuccessful earlier attempt:\n\n{feedback}\n\n"
TEACHER_TEMPLATE = "{prompt}{solution}{feedback}\n\nCorrectly solve the original question."
CRITIQUE_TEMPLATE = ("{prompt}\n\nAn attempt at this question:\n\n{attempt}\n\nFeedback on the attempt:\n\n"
                     "{feedback}\n\nIn a few sentences, say what is wrong with the attempt and how to fix it.")


def cap(text: str, max_chars: int) -> str:
    return text if len(text) <= max_chars else text[:max_chars] + " ...[truncated]"


def teacher_text(prompt: str, sibling: str | None, feedback: str, max_chars: int) -> str | None:
    """Teacher user message = prompt + optional successful sibling + optional feedback + instruction; None when
    there is neither (the rollout is then masked out of both steps). Feedback text is capped; a sibling longer than
    the cap is left out, never cut in the middle of its code (a cut solution is no demonstration)."""
    sibling = sibling if sibling and len(sibling) <= max_chars else None
    if not sibling and not feedback:
        return None
    solution = SOLUTION_TEMPLATE.format(sibling=sibling) if sibling else ""
    fb = FEEDBACK_TEMPLATE.format(feedback=cap(feedback, max_chars)) if feedback else ""
    return TEACHER_TEMPLATE.format(prompt=prompt, solution=solution, feedback=fb)


def group_contexts(successes: list[bool], completions: list[str], feedbacks: list[str], use_sibling: bool,
                   max_chars: float = math.inf) -> list[tuple[str | None, str]]:
    """(sibling, feedback) per rollout of one group. The sibling is the first *other* successful rollout that fits
    in max_chars; a lone success has none (pitfall 5)."""
    fits = [j for j, (ok, c) in enumerate(zip(successes, completions)) if ok and len(c) <= max_chars and use_sibling]
    return [(next((completions[j] for j in fits if j != i), None), fb) for i, fb in enumerate(feedbacks)]


# ================================================================================================================
# The knobs
# ================================================================================================================
@dataclass
class Config(plumbing.Settings):   # the run's settings (model, device, processes, checkpoints): plumbing.Settings
    task: str = arg("code", "toy | code | science | math | qa (--dataset qa:PATH) | path/to/file.py:ClassName")
    algo: str = arg("vpd", "vpd | sdpo | grpo (docs/algorithm.md §7)", choices=["vpd", "sdpo", "grpo"])
    steps: int = arg(200, "training steps (one batch of rollouts each)", check=">= 0")
    seed: int = arg(0, "random seed")
    # sampling (§6)
    batch_prompts: int = arg(4, "B: prompts per step", check=">= 1")
    group_size: int = arg(8, "G: rollouts per prompt", check=">= 2")
    max_new_tokens: int = arg(512, "completion budget", check=">= 1")
    temperature: float = arg(1.0, "sampling temperature; the losses divide logits by it too (§5)", check="> 0")
    thinking: bool = arg(False, "thinking mode of templates that have one (Qwen3); <think> is never graded")
    success_threshold: float = arg(1.0, "a rollout succeeds when reward >= this (§1)")
    # feedback prompting (§2)
    feedback: str = arg("env,sibling", "teacher-context sources, any of env,sibling,critique (§1-2)")
    feedback_max_chars: int = arg(2000, "cap on feedback and sibling text in the teacher prompt", check=">= 1")
    critique_max_new_tokens: int = arg(128, "length of a self-critique (--feedback ...,critique)")
    # M-step (§5)
    lr: float = arg(1e-6, "learning rate", check="> 0")
    alpha: float = arg(1.0, "divergence: 0 KL(teacher||student), 1 KL(student||teacher), else JSD", check="in [0, 1]")
    support: str = arg("topk", "distillation support: student's top-k + tail, or full", choices=["topk", "full"])
    topk: int = arg(20, "k for --support topk", check=">= 1")
    tail: bool = arg(True, "top-k: add the tail bucket log(1 - sum p_topk) (else renormalise top-k)")
    max_grad_norm: float = arg(1.0, "gradient clipping")
    # E-step (§4)
    e_every: int = arg(5, "F: E-step every F M-steps", check=">= 1")
    e_beta: float = arg(0.1, "beta_E of the BCO implicit reward", check="> 0")
    e_target_move: float = arg(0.01, "trust region: per-token KL(teacher before || after) per E-step", check="> 0")
    e_delta_decay: float = arg(0.5, "BCO's delta: weight of earlier E-steps' rollouts, per E-step", check="in [0, 1]")
    e_prior: str = arg("student", "E-step prior: current student or initial model", choices=["student", "initial"])
    e_lr: float = arg(None, "the E-step's first lr (default --lr); the trust region adapts it", type=float, check="> 0")
    e_optimizer: str = arg("shared", "reconstructed: the M-step's AdamW or its own", choices=["shared", "adamw"])
    e_buffer: str = arg("all", "E-step data: rollouts since the last E-step or the last batch", choices=["all", "last"])
    # baselines (§7)
    teacher: str = arg("ema", "SDPO teacher: live (same weights), ema, base (frozen)", choices=["live", "ema", "base"],
                       needs=("algo", "sdpo", "VPD's teacher is the model itself reading the feedback"))
    ema_tau: float = arg(0.05, "SDPO EMA teacher rate: theta_T <- (1-tau) theta_T + tau theta", check="in (0, 1]")
    grpo_std: bool = arg(True, "GRPO: divide group advantages by the group std")
    # warm-up (§10)
    warmup_steps: int = arg(0, "supervised steps that teach only the feedback format before RL", check=">= 0")
    warmup_lr: float = arg(1e-3, "learning rate of the warm-up (its own AdamW, discarded afterwards)")
    # evaluation
    eval_every: int = arg(25, "evaluate every N steps (and at the end)", check=">= 1")
    eval_prompts: int = arg(64, "held-out prompts per evaluation", check=">= 0")
    eval_samples: int = arg(4, "samples per held-out prompt (pass@1 and pass@n, unbiased estimator)", check=">= 1")
    eval_temperature: float = arg(0.6, "evaluation temperature", check=">= 0")
    eval_top_p: float = arg(0.95, "evaluation nucleus sampling", check="in (0, 1]")


PRESETS = {  # task-specific defaults; anything given on the command line wins
    "toy": dict(model="tiny", lr=1e-4, e_beta=1.0, support="full", max_new_tokens=4, batch_prompts=16, group_size=8,
                feedback="env", warmup_steps=200, steps=200, eval_every=10, eval_prompts=20, save_every=1000,
                micro_batch=32, e_buffer="last"),
    "code": dict(lr=1e-6, topk=20, max_new_tokens=512),
    "science": dict(lr=1e-5, topk=100, max_new_tokens=256),
    "math": dict(lr=1e-6, topk=20, max_new_tokens=256),
    "qa": dict(max_new_tokens=64),
}
PRESET_HELP = ("Task presets set the defaults marked 'presets:'; a flag given on the command line wins. Why each "
               "value: docs/algorithm.md (§8 the paper's settings, §10 the toy).")
FEEDBACK_SOURCES = ("env", "sibling", "critique")


def validate(cfg: Config) -> None:
    plumbing.check_ranges(cfg)   # the fields' `check`
    if set(feedback_sources(cfg)) - set(FEEDBACK_SOURCES) or not feedback_sources(cfg):
        raise UserError(f"--feedback takes a comma list of {','.join(FEEDBACK_SOURCES)}; got {cfg.feedback!r}")


def feedback_sources(cfg: Config) -> list[str]:
    return [s.strip() for s in cfg.feedback.split(",") if s.strip()]


# ================================================================================================================
# On-policy sampling (§6): the chat template, stop ids (pitfall 1), the sampler
# ================================================================================================================
def stop_ids(model, tok) -> list[int]:
    """Token ids that end a completion (pitfall 1): the chat template's end-of-turn token(s) first, then the EOS ids
    of the tokenizer and the generation config. Qwen2.5 base is prompted in ChatML but its EOS is <|endoftext|>:
    without <|im_end|> its rollouts run on into invented turns."""
    ids = model.generation_config.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return [i for i in dict.fromkeys(end_of_turn_ids(tok) + ids + [tok.eos_token_id]) if i is not None]


def end_of_turn_ids(tok) -> list[int]:
    """The token(s) that end an assistant turn in the chat template (ChatML <|im_end|>, Llama-3 <|eot_id|>, Gemma
    <end_of_turn>): render a conversation whose assistant text is known and read the added tokens that follow it.
    Of those only the special ones count; if none is special, only the first. An added token that merely follows
    the end of turn is not one: Gemma's GGUF tokenizer has "\n" as an added, non-special token right after
    <end_of_turn>, and stopping on it would cut every rollout at its first line break."""
    probe = "Probe answer 417."
    try:
        text = tok.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": probe}],
                                       tokenize=False)
    except Exception:  # noqa: BLE001  (no template, or one that cannot render this conversation: EOS ids only)
        return []
    if probe not in text:
        return []
    added = tok.added_tokens_decoder
    after = tok(text.rsplit(probe, 1)[1].lstrip(), add_special_tokens=False)["input_ids"]
    run = list(itertools.takewhile(added.__contains__, after))
    return [i for i in run if added[i].special] or run[:1]


def chat_ids(tok, user_text: str, system: str | None = None, thinking: bool = False) -> list[int]:
    """The prompt as the last user turn of the chat template, generation header appended (plain text fallback).
    Templates with a thinking switch (Qwen3's enable_thinking) get it off unless `thinking`; others ignore it."""
    if getattr(tok, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                   "content": user_text}]
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
    else:
        text = (system + "\n\n" if system else "") + user_text + "\n"
    return tok(text, add_special_tokens=False)["input_ids"]


def strip_thinking(text: str) -> str:
    """The answer without its reasoning: <think>...</think> blocks go, as does everything up to a lone </think> (the
    template opened the block) and an unclosed <think> (truncated while thinking). Judges and siblings see this."""
    if "<think>" not in text and "</think>" not in text:
        return text
    return re.sub(r"<think>.*?(?:</think>|$)", "", text, flags=re.S).rsplit("</think>", 1)[-1].lstrip()


def nucleus_weights(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """w proportional to softmax(logits / temperature), unnormalised (the largest weight is 1), with every token
    outside the top-p nucleus (the smallest set of most likely tokens whose probability reaches top_p) set to 0."""
    z = logits.float()
    w = ((z - z.amax(-1, keepdim=True)) / temperature).exp_()
    if top_p < 1.0:
        sorted_w, order = w.sort(-1, descending=True)
        outside = sorted_w.cumsum(-1) - sorted_w >= top_p * w.sum(-1, keepdim=True)   # mass before already >= top_p
        w = w.scatter(-1, order, sorted_w.masked_fill(outside, 0.0))
    return w


class PolicySampler:
    """A logits processor that draws the next token from nucleus_weights(scores, temperature, top_p) by inverse CDF
    and hands generate scores that are 0 at the drawn token and -inf elsewhere, so generate's greedy argmax takes
    the draw. The distribution is do_sample's; torch.multinomial, which it replaces, dominated a CPU decode step at
    a 152k vocabulary (benchmarks/RESULTS.md). Row i's uniforms come from its own generator
    (`seeds[i]`), so a rollout does not depend on which rows share its batch, or which rank samples it."""

    def __init__(self, temperature: float, top_p: float, seeds: list[int]):
        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        w = nucleus_weights(scores, self.temperature, self.top_p)
        u = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(w.device)
        drawn = plumbing.inverse_cdf(w, u)
        return torch.full_like(scores, -math.inf).scatter_(-1, drawn, 0.0)


def row_seed(*key: int) -> int:
    """A 63-bit seed from integers (run seed, step, prompt index, ...): the same in every process."""
    x = 0x9E3779B97F4A7C15
    for k in key:
        x = ((x ^ (k & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x >> 1


# ================================================================================================================
# Rollouts: sampling, scoring, teacher contexts (§6)
# ================================================================================================================
@dataclass
class Rollout:
    prompt_ids: list[int]            # student input: chat-wrapped x
    completion_ids: list[int]        # y up to and including the first EOS (all of it when truncated)
    text: str
    truncated: bool
    reward: float
    success: bool
    feedback: str = ""               # the text the teacher reads (env feedback or critique)
    teacher_ids: list[int] | None = None   # chat-wrapped teacher prompt [x, C]; None = masked out
    teacher_prompt: str | None = None
    borrowed_ids: list[int] | None = None  # a lone success's E-step context: a failed group-mate's feedback (§4)


@torch.no_grad()
def sample(model, tok, prompts: list[list[int]], n: int, max_new_tokens: int, temperature: float, top_p: float,
           eos: list[int], dtype: torch.dtype, seeds: list[int], cache: str = "dynamic"
           ) -> list[tuple[list[int], str, bool]]:
    """n completions per prompt in one batched generate, sampled from the model's own distribution at `temperature`
    with nucleus `top_p` and nothing else (§6: on-policy); completion j of prompt i draws from its own random stream,
    seeded by (seeds[i], j), so it is the same whatever else is in the batch and whichever rank samples it. Returns
    (completion ids up to the first stop id, decoded text without <think> blocks, truncated) per row, prompt-major."""
    from transformers import GenerationConfig, LogitsProcessorList
    device = next(model.parameters()).device
    ids, mask = pad_left(prompts, tok.pad_token_id, device)
    was_training = model.training
    model.eval()
    # Only what is asked for: generate fills every unset field from model.generation_config, and checkpoints ship
    # repetition_penalty, top_k, min_p ... there. An empty one stands in for it during the call. generate runs
    # greedy; PolicySampler draws each token from the policy (temperature 0: greedy decoding).
    gen = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
                           pad_token_id=tok.pad_token_id, cache_implementation=None if cache == "dynamic" else cache)
    draw = LogitsProcessorList([PolicySampler(temperature, top_p, [row_seed(s, j) for s in seeds for j in range(n)])]
                               if temperature > 0 else [])
    saved, model.generation_config = model.generation_config, GenerationConfig()
    try:
        with autocast(device, dtype):
            out = model.generate(input_ids=ids.repeat_interleave(n, 0), attention_mask=mask.repeat_interleave(n, 0),
                                 generation_config=gen, logits_processor=draw, synced_gpus=plumbing.is_sharded(model))
    finally:
        model.generation_config = saved
        model.train(was_training)
    comp = out[:, ids.shape[1]:]
    cmask, truncated = completion_mask(comp, eos)
    rows = [row[:n] for row, n in zip(comp.tolist(), cmask.sum(1).tolist())]
    return [(c, strip_thinking(tok.decode(c, skip_special_tokens=True)), t) for c, t in zip(rows, truncated.tolist())]


def collect_rollouts(model, tok, task, examples, cfg: Config, eos, dtype, seeds: list[int]) -> list[Rollout]:
    """G rollouts of each prompt (random streams seeded per prompt: `seeds`) from the student, scored by the task;
    teacher contexts attached unless GRPO."""
    prompts = [chat_ids(tok, task.prompt(ex), task.system, cfg.thinking) for ex in examples]
    samples = sample(model, tok, prompts, cfg.group_size, cfg.max_new_tokens, cfg.temperature, 1.0, eos, dtype,
                     seeds, cfg.gen_cache)
    exs = [ex for ex in examples for _ in range(cfg.group_size)]
    scores = task.score_batch(exs, [s[1] for s in samples])
    rollouts = [Rollout(prompts[i // cfg.group_size], c, text, trunc, sc.reward, sc.reward >= cfg.success_threshold,
                        sc.feedback or "") for i, ((c, text, trunc), sc) in enumerate(zip(samples, scores))]
    if cfg.algo == "grpo":
        return rollouts
    sources = feedback_sources(cfg)
    if "critique" in sources:
        add_critiques(model, tok, task, exs, rollouts, cfg, eos, dtype, [row_seed(s, 1) for s in seeds])
    elif "env" not in sources:
        for r in rollouts:
            r.feedback = ""
    for g in range(len(examples)):
        group = rollouts[g * cfg.group_size:(g + 1) * cfg.group_size]
        contexts = group_contexts([r.success for r in group], [r.text for r in group], [r.feedback for r in group],
                                  "sibling" in sources, cfg.feedback_max_chars)
        for r, (sib, fb) in zip(group, contexts):
            r.teacher_prompt = teacher_text(task.prompt(examples[g]), sib, fb, cfg.feedback_max_chars)
            if r.teacher_prompt is not None:
                r.teacher_ids = chat_ids(tok, r.teacher_prompt, task.system, cfg.thinking)
        fb = next((r.feedback for r in group if not r.success and r.feedback), "")
        for r in group:   # BCO needs successes in feedback contexts too (§4): a lone success borrows one
            if cfg.algo == "vpd" and r.success and r.teacher_ids is None and fb:
                r.borrowed_ids = chat_ids(tok, teacher_text(task.prompt(examples[g]), None, fb,
                                                            cfg.feedback_max_chars), task.system, cfg.thinking)
    return rollouts


def add_critiques(model, tok, task, exs, rollouts: list[Rollout], cfg: Config, eos, dtype, seeds: list[int]) -> None:
    """Self-critique source (§1): the model critiques each failed attempt, given the env feedback (or the task's
    reference explanation); the critique replaces the feedback text of that rollout. seeds: one per prompt."""
    failed = [i for i, r in enumerate(rollouts) if not r.success]
    for r in rollouts:
        if r.success:
            r.feedback = ""
    if not failed:
        return
    queries = [chat_ids(tok, CRITIQUE_TEMPLATE.format(
        prompt=task.prompt(exs[i]), attempt=cap(rollouts[i].text, cfg.feedback_max_chars),
        feedback=cap(rollouts[i].feedback or task.reference(exs[i]) or "(none)", cfg.feedback_max_chars)),
        task.system, cfg.thinking) for i in failed]
    critiques = sample(model, tok, queries, 1, cfg.critique_max_new_tokens, cfg.temperature, 1.0, eos, dtype,
                       [row_seed(seeds[i // cfg.group_size], i % cfg.group_size) for i in failed])
    for i, (_, text, _) in zip(failed, critiques):
        rollouts[i].feedback = text.strip()


# ================================================================================================================
# M-step (§5): token-level distillation of the teacher into the student
# ================================================================================================================
def entropy_sum(logits: torch.Tensor, mask: torch.Tensor, start: int) -> float:
    """Sum of the entropies at the metric's positions of a chunk that starts at completion position `start`."""
    return (entropy(entropy_positions(logits, start)) * entropy_positions(mask, start)).sum().item()


def m_step(model, teacher, rollouts: list[Rollout], cfg: Config, pad: int, dtype) -> dict:
    """Backpropagates L_M = token-mean over masked tokens of D(pi_theta(.|x,y<t) || sg q(.|x,C,y<t)); the teacher
    runs without grad, the top-k support is the student's, and the loss goes a chunk of positions at a time
    (backward_by_chunks). Returns metrics."""
    rows = [r for r in rollouts if r.teacher_ids is not None]
    total = global_share(sum(len(r.completion_ids) for r in rows))
    rows, weights = lockstep(rows, dataclasses.replace(rollouts[0], teacher_ids=rollouts[0].prompt_ids))
    sums = {"loss": 0.0, "entropy": 0.0, "entropy_n": 0.0, "nonfinite": 0}
    for mb, w in zip(micro_batches(rows, cfg.micro_batch), micro_batches(weights, cfg.micro_batch)):
        comp, mask = pad_right([r.completion_ids for r in mb], pad, next(model.parameters()).device)
        mask = mask * torch.tensor(w, device=mask.device)[:, None]
        h_s = completion_hidden(model, [r.prompt_ids for r in mb], comp, pad, dtype)
        with torch.no_grad():
            h_t = completion_hidden(teacher, [r.teacher_ids for r in mb], comp, pad, dtype)

        def chunk_loss(h_c, c):   # this chunk's share of L_M
            s_logits = head_logits(model, h_c, cfg.temperature, dtype)
            with torch.no_grad():
                idx = s_logits.topk(cfg.topk, -1).indices if cfg.support == "topk" else None
                t_lp = support_logprobs(head_logits(teacher, h_t[:, c], cfg.temperature, dtype), idx, cfg.tail)
                sums["entropy"] += entropy_sum(s_logits, mask[:, c], c.start)
            div = divergence(support_logprobs(s_logits, idx, cfg.tail), t_lp, cfg.alpha)
            return (div * mask[:, c]).sum() / max(total, 1e-30)
        backward_by_chunks(h_s, chunk_loss, position_chunks(*comp.shape, vocab_size(model), cfg.logit_chunk), sums)
        sums["entropy_n"] += entropy_positions(mask, 0).sum().item()
    loss, ent, bad = plumbing.reduce_sums(sums)
    return {"M/loss": loss, "student_entropy": ent, "nonfinite": bad}


# ================================================================================================================
# E-step (§4): teacher refinement with the unpaired preference loss (BCO) against a moving prior
# ================================================================================================================
@dataclass
class EState:
    """What the E-step carries from one E-step to the next (§4): the trust region's lr and BCO's running delta."""
    lr: float                 # the E-step's learning rate, set by the trust region's controller (next_e_lr)
    delta_sum: float = 0.0    # sum of r~ and number of rollouts behind delta = delta_sum / delta_n, both multiplied
    delta_n: float = 0.0      # by --e-delta-decay at every E-step, so old E-steps fade


E_LINE_SEARCH = 5             # a rejected update is halved up to 5 times (1/32 of its size), then dropped
E_LR_BOUNDS = (1e-3, 1e2)     # the controller keeps the E-step's lr within these multiples of --e-lr


def e_rows(buffer: list[Rollout]) -> list[tuple[Rollout, list[int]]]:
    """The E-step's data (§4): each buffered rollout with its teacher context, a lone success with the context it
    borrowed from a failed group-mate (Rollout.borrowed_ids); rollouts with neither are left out."""
    return [(r, r.teacher_ids or r.borrowed_ids) for r in buffer if r.teacher_ids or r.borrowed_ids]


def e_gradient(model, prior, rows, weights, cfg: Config, delta: list, pad: int, dtype) -> dict:
    """Backpropagates L_E = mean_i BCO(r~_i - delta) over `rows` (weight 0: a lockstep filler), a micro-batch at a
    time; the gradient flows only through log q(y|x,C). Per micro-batch: the teacher's backbone with grad, its LM
    head per chunk of positions without grad (log q, and the support log-probs the trust region compares against),
    the prior without grad; delta = [sum, n] takes in the micro-batch's r~ (all ranks') before its loss uses it;
    then g_i = dL_E/dlog q_i goes back through the head by chunks and once through the backbone. Returns log q and
    log pi per row, the reference support log-probs and sums."""
    device, temp, chunk, beta = next(model.parameters()).device, cfg.temperature, cfg.logit_chunk, cfg.e_beta
    share = global_share(sum(weights))
    logq, logp, ref, sums = [], [], [], {"loss": 0.0, "nonfinite": 0, "k3": 0.0, "ntok": 0.0}
    for mb, w in zip(micro_batches(rows, cfg.micro_batch), micro_batches(weights, cfg.micro_batch)):
        comp, mask = pad_right([r.completion_ids for r, _ in mb], pad, device)
        w = torch.tensor(w, device=device)
        chunks = position_chunks(*comp.shape, vocab_size(model), chunk)
        h_q = completion_hidden(model, [ids for _, ids in mb], comp, pad, dtype)
        with torch.no_grad():
            h_p = completion_hidden(prior, [r.prompt_ids for r, _ in mb], comp, pad, dtype)
            logp_t = torch.cat([token_logprobs(head_logits(prior, h_p[:, c], temp, dtype), comp[:, c])
                                for c in chunks], 1)
            parts = []
            for c in chunks:
                z = head_logits(model, h_q[:, c].detach(), temp, dtype)
                parts.append(token_logprobs(z, comp[:, c]))
                idx = z.topk(cfg.topk, -1).indices if cfg.support == "topk" else None
                ref.append((idx, support_logprobs(z, idx, cfg.tail)))
            logq_t = torch.cat(parts, 1)
        lq, lp = (logq_t * mask).sum(1), (logp_t * mask).sum(1)
        logq.append(lq)
        logp.append(lp)
        r = beta * (lq - lp)
        real = w > 0
        ok = bool(torch.isfinite(r[real]).all())
        r_sum, n, bad, k3, ntok = all_sum([r[real].sum().item() if ok else 0.0, real.sum().item(), not ok,
                                           (kl_k3(logp_t, logq_t) * mask * w[:, None]).sum().item() if ok else 0.0,
                                           (mask * w[:, None]).sum().item()])
        sums["k3"], sums["ntok"] = sums["k3"] + k3, sums["ntok"] + ntok
        leaf = lq.clone().requires_grad_()
        if bad:   # a non-finite micro-batch (on any rank): no delta, no gradient; the caller drops the update
            sums["nonfinite"] += 1
            loss = leaf.sum() * 0.0
        else:
            delta[:] = [delta[0] + r_sum, delta[1] + n]
            succ = torch.tensor([float(x.success) for x, _ in mb], device=device)
            loss = (bco_loss(leaf[real], lp[real], succ[real], beta, delta[0] / delta[1])[0] * real.sum() / share
                    if real.any() else leaf.sum() * 0.0)
        g = torch.autograd.grad(loss, leaf)[0]

        def chunk_loss(h_c, c):   # sum_i g_i log q(y_i,c|...): the gradient of L_E through this chunk
            return (g[:, None] * token_logprobs(head_logits(model, h_c, temp, dtype), comp[:, c]) * mask[:, c]).sum()
        backward_by_chunks(h_q, chunk_loss, chunks, sums)
    return {"logq": torch.cat(logq), "logp": torch.cat(logp), "ref": ref, **sums}


@torch.no_grad()
def teacher_move(model, rows, weights, ref: list, cfg: Config, pad: int, dtype) -> tuple[float, torch.Tensor]:
    """The trust region's reading (§4): per-token KL(q_before || q_now) of the teacher on the rows' own contexts,
    exact over the M-step's support (the before-teacher's top-k + tail bucket, or the full vocabulary), averaged
    over completion tokens of all ranks; and log q_now(y|x,C) per row."""
    device, temp = next(model.parameters()).device, cfg.temperature
    move, ntok, logq, refs = 0.0, 0.0, [], iter(ref)
    for mb, w in zip(micro_batches(rows, cfg.micro_batch), micro_batches(weights, cfg.micro_batch)):
        comp, mask = pad_right([r.completion_ids for r, _ in mb], pad, device)
        mask = mask * torch.tensor(w, device=device)[:, None]
        h = completion_hidden(model, [ids for _, ids in mb], comp, pad, dtype)
        parts = []
        for c in position_chunks(*comp.shape, vocab_size(model), cfg.logit_chunk):
            z = head_logits(model, h[:, c], temp, dtype)
            idx, before = next(refs)
            move += (kl(before, support_logprobs(z, idx, cfg.tail)) * mask[:, c]).sum().item()
            parts.append(token_logprobs(z, comp[:, c]))
        logq.append((torch.cat(parts, 1) * mask).sum(1))
        ntok += mask.sum().item()
    move, ntok = all_sum([move, ntok])
    plumbing.reshard(model)                                # the line search changes the weights next
    return move / max(ntok, 1), torch.cat(logq)


def bco_sums(logq, logp, rows, weights, beta: float, delta: float) -> tuple[float, float, float]:
    """(mean BCO loss, mean r~ of successes - mean r~ of failures, mean r~) over the rows of all ranks."""
    w = torch.tensor(weights, device=logq.device)
    s = torch.tensor([float(r.success) for r, _ in rows], device=logq.device)
    real = w > 0
    loss = bco_loss(logq[real], logp[real], s[real], beta, delta)[0] * real.sum() if real.any() else logq.sum() * 0
    r = beta * (logq - logp) * w
    loss, n, rs, ns, rf, nf = all_sum([loss.item(), real.sum().item(), (r * s).sum().item(), (w * s).sum().item(),
                                       (r * (1 - s)).sum().item(), (w * (1 - s)).sum().item()])
    return loss / max(n, 1), rs / max(ns, 1) - rf / max(nf, 1), (rs + rf) / max(n, 1)


def e_step(model, prior, opt, buffer: list[Rollout], cfg: Config, es: EState, pad: int, dtype) -> dict:
    """One E-step (§4) with its trust region. Skipped (E/skipped = 1) unless the buffer holds successes *and*
    failures with a context: BCO on one class alone only pushes that class's likelihood down or up. Otherwise:
    backpropagate L_E (e_gradient), step `opt` at es.lr, then a line search keeps the update only if the teacher
    moved at most 2 x --e-target-move per token (teacher_move) and L_E did not rise; else the update is halved, up
    to E_LINE_SEARCH times, then dropped. The controller sets the next lr (next_e_lr); delta is kept. A non-finite
    loss or reading changes nothing: not the weights, not delta, not the lr. Every decision is taken on numbers
    summed over all ranks, so all ranks take the same one."""
    rows = e_rows(buffer)
    n_rows, n_succ, n_borrowed = all_sum([len(rows), sum(r.success for r, _ in rows),
                                          sum(r.teacher_ids is None for r, _ in rows)])
    out = {"E/rollouts": int(n_rows), "E/successes": int(n_succ), "E/lr": es.lr, "E/skipped": 1,
           "E/borrowed": int(n_borrowed)}
    if not 0 < n_succ < n_rows:
        return out
    rows, weights = lockstep(rows, (buffer[0], buffer[0].prompt_ids))
    opt.zero_grad(set_to_none=True)
    delta = [es.delta_sum * cfg.e_delta_decay, es.delta_n * cfg.e_delta_decay]
    g = e_gradient(model, prior, rows, weights, cfg, delta, pad, dtype)
    d = delta[0] / max(delta[1], 1e-30)
    loss_before, margin, r_mean = bco_sums(g["logq"], g["logp"], rows, weights, cfg.e_beta, d)
    out.update({"E/loss": loss_before, "E/delta": d, "E/reward_mean": r_mean, "E/reward_margin": margin,
                "E/teacher_student_kl": g["k3"] / max(g["ntok"], 1)})
    plumbing.average_gradients(model)
    params = [p for p in model.parameters() if p.grad is not None]
    out["E/grad_norm"] = grad_norm = clip_gradients(params, cfg.max_grad_norm)
    if g["nonfinite"] or not math.isfinite(loss_before) or not math.isfinite(grad_norm):
        opt.zero_grad(set_to_none=True)
        return out
    weights_now = [p.detach() for p in params]
    back = [w.clone() for w in weights_now]                # theta_before, then theta_before - theta_after
    for group in opt.param_groups:
        group["lr"] = es.lr
    opt.step()
    opt.zero_grad(set_to_none=True)
    torch._foreach_sub_(back, weights_now)
    scale, limit = 1.0, 2 * cfg.e_target_move
    for _ in range(E_LINE_SEARCH + 1):
        move, logq = teacher_move(model, rows, weights, g["ref"], cfg, pad, dtype)
        loss_after = bco_sums(logq, g["logp"], rows, weights, cfg.e_beta, d)[0]
        if math.isfinite(move) and move <= limit and loss_after <= loss_before:
            break
        torch._foreach_add_(weights_now, back, alpha=scale / 2)   # halve the update
        scale /= 2
    else:                                                  # still outside after E_LINE_SEARCH halvings: undo it
        torch._foreach_add_(weights_now, back, alpha=scale)
        scale = 0.0
    lo, hi = E_LR_BOUNDS[0] * (cfg.e_lr or cfg.lr), E_LR_BOUNDS[1] * (cfg.e_lr or cfg.lr)
    es.lr = next_e_lr(es.lr, move, cfg.e_target_move, scale or 2.0 ** -E_LINE_SEARCH, (lo, hi))
    es.delta_sum, es.delta_n = delta
    out.update({"E/skipped": 0, "E/teacher_move": move if scale else 0.0, "E/step_scale": scale,
                "E/loss_after": loss_after if scale else loss_before})
    return out


def e_optimizer(model, cfg: Config, m_opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """The E-step's optimizer (§4, reconstructed): `shared`, the M-step's AdamW itself (one optimizer for both
    losses, as in SDPO's trainer; no extra memory), or `adamw`, an AdamW of its own (its moments never mix with the
    M-step's: 8 bytes per parameter, about +4 GB for a 0.5B model)."""
    own = cfg.e_optimizer == "adamw"
    return torch.optim.AdamW(model.parameters(), lr=cfg.e_lr or cfg.lr, weight_decay=0.0) if own else m_opt


# ================================================================================================================
# GRPO baseline (§7)
# ================================================================================================================
def grpo_step(model, rollouts: list[Rollout], cfg: Config, pad: int, dtype) -> dict:
    """Token-level policy gradient with group-normalised advantages; single on-policy update, no reference KL.
    L = -sum_i sum_t A_i log pi(y_it) / (all completion tokens of the batch), backpropagated by chunks of positions."""
    adv = group_advantages(torch.tensor([r.reward for r in rollouts]), cfg.group_size, cfg.grpo_std)
    rows = list(zip(rollouts, adv.tolist()))     # rows with A = 0 add no gradient but count in the entropy
    total = global_share(sum(len(r.completion_ids) for r in rollouts))
    sums = {"loss": 0.0, "entropy": 0.0, "entropy_n": 0.0, "nonfinite": 0}
    for mb in micro_batches(rows, cfg.micro_batch):
        comp, mask = pad_right([r.completion_ids for r, _ in mb], pad, next(model.parameters()).device)
        h = completion_hidden(model, [r.prompt_ids for r, _ in mb], comp, pad, dtype)
        a = torch.tensor([a for _, a in mb], device=comp.device)

        def chunk_loss(h_c, c):   # this chunk's share of L
            logits = head_logits(model, h_c, cfg.temperature, dtype)
            with torch.no_grad():
                sums["entropy"] += entropy_sum(logits, mask[:, c], c.start)
            return -(a[:, None] * token_logprobs(logits, comp[:, c]) * mask[:, c]).sum() / total
        backward_by_chunks(h, chunk_loss, position_chunks(*comp.shape, vocab_size(model), cfg.logit_chunk), sums)
        sums["entropy_n"] += entropy_positions(mask, 0).sum().item()
    loss, ent, bad = plumbing.reduce_sums(sums)
    return {"G/loss": loss, "student_entropy": ent, "nonfinite": bad}


# ================================================================================================================
# Supervised warm-up (§10): teach only the feedback *format* (cold-start self-distillation collapses)
# ================================================================================================================
def warmup(model, tok, task, cfg: Config, eos, dtype) -> float:
    """Cross-entropy on teacher prompts of the task's warm-up data (targets disjoint from the task's answers)."""
    rng = random.Random(cfg.seed + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.warmup_lr)
    use_sibling, use_fb = "sibling" in feedback_sources(cfg), set(feedback_sources(cfg)) & {"env", "critique"}
    forms = [f for f, ok in (("fb", use_fb), ("sib", use_sibling), ("both", use_fb and use_sibling)) if ok]
    loss = float("nan")
    for _ in range(cfg.warmup_steps):
        prompts, targets = [], []
        for ex, target, fb in task.warmup_examples(rng, cfg.batch_prompts * cfg.group_size):
            form = rng.choice(forms)
            text = teacher_text(task.prompt(ex), target if form != "fb" else None, fb if form != "sib" else "",
                                cfg.feedback_max_chars)
            prompts.append(chat_ids(tok, text, task.system, cfg.thinking))
            targets.append(tok(target, add_special_tokens=False)["input_ids"] + [eos[0]])   # the end of turn
        comp, mask = pad_right(targets, tok.pad_token_id, next(model.parameters()).device)
        logp = token_logprobs(completion_logits(model, prompts, comp, 1.0, tok.pad_token_id, dtype), comp)
        batch_loss = -(logp * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        batch_loss.backward()
        opt.step()
        loss = batch_loss.item()
    return loss


# ================================================================================================================
# Evaluation: the student without feedback, the teacher with it
# ================================================================================================================
def evaluate(model, tok, task, examples, cfg: Config, eos, seed: int, dtype) -> dict:
    """Student pass@1 / pass@n on held-out prompts (no feedback); teacher success: one teacher answer per prompt
    whose first student sample got env feedback, with it in context. Every prompt samples from its own random
    stream (seed, index), so the numbers do not depend on the number of ranks, which split the prompts."""
    if not examples:
        return {}
    n, ok, rank = cfg.eval_samples, lambda s: s.reward >= cfg.success_threshold, plumbing.rank()
    mine = list(range(rank, len(examples), plumbing.world()))
    idx, weights = lockstep(mine, 0)              # every rank calls generate as often as the others (FSDP2)
    exs = [examples[i] for i in idx]
    prompts = [chat_ids(tok, task.prompt(ex), task.system, cfg.thinking) for ex in exs]
    outs = sample(model, tok, prompts, n, cfg.max_new_tokens, cfg.eval_temperature, cfg.eval_top_p, eos, dtype,
                  [row_seed(seed, i, 0) for i in idx])
    scores = task.score_batch([ex for ex in exs for _ in range(n)], [o[1] for o in outs])
    wins = [sum(map(ok, scores[k * n:(k + 1) * n])) for k in range(len(exs))]
    fixes = [(k, teacher_text(task.prompt(exs[k]), None, scores[k * n].feedback, cfg.feedback_max_chars))
             for k in range(len(exs)) if weights[k] and scores[k * n].feedback]
    t_wins = []
    if all_max(len(fixes)):
        fixes, t_weights = lockstep(fixes, (0, teacher_text(task.prompt(exs[0]), None, "-", cfg.feedback_max_chars)))
        t_out = sample(model, tok, [chat_ids(tok, t, task.system, cfg.thinking) for _, t in fixes], 1,
                       cfg.max_new_tokens, cfg.eval_temperature, cfg.eval_top_p, eos, dtype,
                       [row_seed(seed, idx[k], 1) for k, _ in fixes])
        t_scores = task.score_batch([exs[k] for k, _ in fixes], [o[1] for o in t_out])
        t_wins = [ok(sc) for sc, w in zip(t_scores, t_weights) if w]
    per_prompt = plumbing.all_gather_list([(w, scores[k * n].reward) for k, w in enumerate(wins) if weights[k]])
    rewards = plumbing.all_gather_list([sc.reward for k, sc in enumerate(scores) if weights[k // n]])
    t_wins = plumbing.all_gather_list(t_wins)
    m = {"eval/pass@1": sum(pass_at_k(n, w, 1) for w, _ in per_prompt) / len(per_prompt),
         f"eval/pass@{n}": sum(pass_at_k(n, w, n) for w, _ in per_prompt) / len(per_prompt),
         "eval/reward": sum(rewards) / len(rewards), "eval/teacher_n": len(t_wins)}
    return m | ({"eval/teacher_success": sum(t_wins) / len(t_wins)} if t_wins else {})


# ================================================================================================================
# The loop (§6)
# ================================================================================================================
def train(cfg: Config) -> str:
    """The algorithm box: each step samples B x G rollouts and distils the teacher into the student (M-step; GRPO:
    policy gradient); every F steps the E-step refines the teacher on the buffered rollouts. Returns the run dir."""
    run = setup(cfg)
    model, state, es, pad, dtype = run.model, run.state, run.es, run.pad, run.dtype
    bar = plumbing.progress(run, lambda: run_eval(run, 0))   # (a new run logs step 0: the model before any RL)
    for step in bar:
        t0 = time.time()
        model.train()
        # every rank draws the same B prompts and samples its contiguous share of them, each from its own seed
        picks = [run.data_rng.randrange(len(run.train_set)) for _ in range(cfg.batch_prompts)]
        mine = plumbing.my_share(len(picks))
        plumbing.refresh(run.gen, model)            # --gen-weights bf16: the copy takes the weights of the last update
        rollouts = collect_rollouts(run.gen, run.tok, run.task, [run.train_set[picks[i]] for i in mine], cfg,
                                    run.eos, run.gen_dtype, [row_seed(cfg.seed, step, i) for i in mine])
        t_gen = time.time() - t0
        # ---- M-step (or the GRPO update) -------------------------------------------------------------------
        run.opt.zero_grad(set_to_none=True)
        if cfg.algo == "grpo":
            m = grpo_step(model, rollouts, cfg, pad, dtype)
        else:
            m = m_step(model, run.teacher, rollouts, cfg, pad, dtype)
        m.update(plumbing.optimizer_step(model, run.opt, cfg.lr, cfg.max_grad_norm, m.pop("nonfinite"), state))
        if cfg.algo == "sdpo" and cfg.teacher == "ema":
            plumbing.reshard(run.teacher, model)
            ema_update(run.teacher, model, cfg.ema_tau)
        # ---- E-step every F steps on the rollouts buffered since the last one -------------------------------
        if cfg.algo == "vpd":
            run.buffer = run.buffer + rollouts if cfg.e_buffer == "all" else rollouts
        if cfg.algo == "vpd" and step % cfg.e_every == 0:
            t_e = time.time()
            m.update(e_step(model, run.prior, run.e_opt, run.buffer, cfg, es, pad, dtype))
            m["E/seconds"] = time.time() - t_e
            run.buffer = []
        # ---- metrics, evaluation, checkpoint ------------------------------------------------------------------
        plumbing.end_step(run, step, m, rollouts, time.time() - t0, t_gen, lambda: run_eval(run, step))
        bar.set_postfix({k: f"{m[k]:.3g}" for k in ("reward", "M/loss", "E/loss", "eval/pass@1") if k in m})
    return run.run_dir


def run_eval(run, step: int) -> dict:
    plumbing.refresh(run.gen, run.model)
    return evaluate(run.gen, run.tok, run.task, run.eval_set, run.cfg, run.eos, row_seed(run.cfg.seed, step, 7919),
                    run.gen_dtype)


# ================================================================================================================
# Setup and CLI (plumbing.py: model loading, devices, processes, run directories, checkpoints, curves)
# ================================================================================================================
@dataclass
class Run:
    """What the loop works on, built by setup; plumbing's save_checkpoint and restore_checkpoint keep its state."""
    cfg: Config
    model: torch.nn.Module
    tok: object                           # the tokenizer (padding left)
    task: tasks_lib.Task
    train_set: list
    eval_set: list
    eos: list[int]                        # stop ids (pitfall 1)
    pad: int
    dtype: torch.dtype                    # the compute dtype (--dtype resolved)
    run_dir: str
    state: dict                           # what a checkpoint keeps: step, E-step state, buffer, data RNG, ...
    opt: torch.optim.Optimizer            # the M-step's AdamW
    e_opt: torch.optim.Optimizer | None   # the E-step's (VPD): the same one, or its own (--e-optimizer)
    teacher: torch.nn.Module              # SDPO's EMA / base copy, else the model itself (VPD, SDPO-live)
    prior: torch.nn.Module                # the E-step's prior: the model itself, or the initial model's copy
    gen: torch.nn.Module                  # what generate runs: the model, or its bf16 copy (--gen-weights bf16)
    gen_dtype: torch.dtype
    data_rng: random.Random = field(default_factory=random.Random)
    buffer: list = field(default_factory=list)   # rollouts since the last E-step
    es: EState | None = None
    recent: list = field(default_factory=list)   # the last steps' metrics, for the health warnings
    warned: set = field(default_factory=set)


def setup(cfg: Config) -> Run:
    """The run: task, data, model, stop ids, run directory (plumbing.prepare), the SDPO teacher and the E-step prior
    (copies, or the model itself), both optimizers, and with --resume everything its checkpoint keeps."""
    validate(cfg)
    resume, task, train_set, test_set, model, tok, dtype, run_dir = plumbing.prepare(cfg)
    eos = stop_ids(model, tok)
    state = {"step": 0, "e": dataclasses.asdict(EState(cfg.e_lr or cfg.lr)), "skipped": 0, "elapsed": 0.0,
             "data_rng": random.Random(cfg.seed).getstate(), "buffer": [], "warmup_loss": None}
    if not resume and cfg.warmup_steps:
        state["warmup_loss"] = warmup(model, tok, task, cfg, eos, dtype)
    frozen = lambda: copy.deepcopy(model).eval().requires_grad_(False)  # noqa: E731
    teacher = frozen() if cfg.algo == "sdpo" and cfg.teacher != "live" else model   # SDPO's EMA / base teacher
    prior = frozen() if cfg.algo == "vpd" and cfg.e_prior == "initial" else model   # --e-prior initial
    if resume:
        plumbing.restore_copies(resume[0], model, teacher, prior)
    gen = copy.deepcopy(model).to(torch.bfloat16).eval().requires_grad_(False) if cfg.gen_weights == "bf16" else model
    for m in {id(m): m for m in (model, teacher, prior, gen)}.values():
        plumbing.shard(m, cfg.dist)                   # torchrun --dist fsdp: each one sharded over the ranks
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    run = Run(cfg, model, tok, task, train_set, test_set[:cfg.eval_prompts], eos, tok.pad_token_id, dtype, run_dir,
              state, opt, e_optimizer(model, cfg, opt) if cfg.algo == "vpd" else None, teacher, prior, gen,
              dtype if gen is model else torch.float32)
    if resume:
        plumbing.restore_checkpoint(run, *resume)
    run.data_rng.setstate(run.state["data_rng"])
    run.buffer, run.es = [Rollout(**r) for r in run.state["buffer"]], EState(**run.state["e"])
    return run


def parse_args(argv=None) -> tuple[Config, object]:
    return plumbing.parse_config(Config, PRESETS, argv, __doc__.split("\n\n")[0], PRESET_HELP)


def main(argv=None) -> int:
    return plumbing.main(parse_args, train, argv)


if __name__ == "__main__":
    sys.exit(main())
