"""Time and memory benchmark of vpd.py's training step, phase by phase, on a randomly initialised model.

    python benchmarks/bench_vpd.py --preset tiny --algo vpd,sdpo,grpo
    python benchmarks/bench_vpd.py --preset tiny-bigvocab --prompts 2 --group-size 8 --new-tokens 256 \
        --micro-batch 1,2,4 --naive                      # M-step memory vs the naive full-vocab reference
    python benchmarks/bench_vpd.py --preset tiny --gen-modes dynamic,per-prompt,static,static-compile --algo none
    python benchmarks/bench_vpd.py --preset qwen2.5-0.5b --device cuda   # the default 0.5B configuration on a GPU
    python benchmarks/bench_vpd.py --vpd-path /tmp/old --preset tiny-bigvocab ...   # another checkout's vpd.py
    (benchmarks/bench_trl.py measures TRL's SDPOTrainer on the same model and sizes.)

Every measured phase calls vpd.py's own functions (vpd.sample, vpd.m_step, vpd.e_step, vpd.grpo_step,
plumbing.optimizer_step, vpd.ema_update), so the numbers are those of the real code path. Generation is forced to the full
--new-tokens (min_new_tokens = max_new_tokens, so EOS ids are suppressed) and the rollouts get synthetic rewards (half
of each group succeeds) and random teacher prompts, so every row takes part in every phase: sizes are fixed.

Memory. CUDA: torch.cuda.max_memory_allocated, with the peak counter read and reset at every phase boundary (so nested
phases each get their own peak). CPU: resident set size (VmRSS of /proc/self/statm) sampled every --rss-interval-ms by
a background thread while a phase runs, plus a reading at each boundary; a phase's peak is the largest sample, and
"delta" is that peak minus the reading at the phase's start. "CPU s" is the process's CPU time during the phase (all
threads; less sensitive than seconds to other jobs on a shared machine). Tensors that live shorter than the sampling
interval can be missed; the big logits tensors live far longer. glibc returns freed allocations >= 32 MB to the OS
immediately and malloc_trim(0) is called between phases, so the readings do not keep stale heap. ru_maxrss (the
process-wide peak, never reset) is printed at the end as a cross-check.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import ctypes
import gc
import inspect
import os
import random
import resource
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# --vpd-path DIR: benchmark the vpd.py of another checkout (e.g. the previous commit, for before/after tables)
_VPD_DIR = next((a.split("=", 1)[1] if "=" in a else sys.argv[i + 2] for i, a in enumerate(sys.argv[1:])
                 if a.startswith("--vpd-path")), None) or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(_VPD_DIR))

import torch  # noqa: E402

import plumbing  # noqa: E402
import vpd  # noqa: E402

BIG_VOCAB = 151936
PRESETS = {   # hidden, layers, heads, kv heads, intermediate, vocab (None = the tiny tokenizer's)
    "tiny": dict(hidden=64, layers=2, heads=4, kv=2, inter=128, vocab=None),
    "tiny-bigvocab": dict(hidden=64, layers=2, heads=4, kv=2, inter=128, vocab=BIG_VOCAB),
    "mid-bigvocab": dict(hidden=256, layers=4, heads=4, kv=2, inter=512, vocab=BIG_VOCAB),
    "qwen2.5-0.5b": dict(hidden=896, layers=24, heads=14, kv=2, inter=4864, vocab=BIG_VOCAB),
}
MB = 2 ** 20
T0 = time.time()


# ================================================================================================================
# Memory tracking
# ================================================================================================================
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class Mem:
    """Per-phase peak memory; phases may nest (each open phase gets every reading)."""

    def __init__(self, device: torch.device, interval_ms: float):
        self.cuda = device.type == "cuda"
        self.open: dict[int, list] = {}       # id -> [start, peak]
        self.lock = threading.Lock()
        self.next_id = 0
        self.stop = threading.Event()
        if not self.cuda:
            self.thread = threading.Thread(target=self._sample, args=(interval_ms / 1000,), daemon=True)
            self.thread.start()

    def _sample(self, dt: float) -> None:
        while not self.stop.wait(dt):
            if self.open:
                self._update(rss_bytes())

    def _update(self, value: int) -> None:
        with self.lock:
            for rec in self.open.values():
                rec[1] = max(rec[1], value)

    def _flush(self) -> int:
        """Reading at a boundary: CUDA, the peak since the last boundary (then reset); CPU, the current RSS."""
        if self.cuda:
            torch.cuda.synchronize()
            peak, now = torch.cuda.max_memory_allocated(), torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            self._update(peak)
            return now
        now = rss_bytes()
        self._update(now)
        return now

    def begin(self) -> int:
        now = self._flush()
        with self.lock:
            self.next_id += 1
            self.open[self.next_id] = [now, now]
            return self.next_id

    def end(self, pid: int) -> tuple[int, int]:
        """Returns (peak bytes, peak - bytes at the start)."""
        self._flush()
        with self.lock:
            start, peak = self.open.pop(pid)
        return peak, peak - start

    def close(self) -> None:
        self.stop.set()


class Phases:
    """Collects rows (name, seconds, tokens, peak, delta) for the printed tables."""

    def __init__(self, mem: Mem, device: torch.device):
        self.mem, self.device, self.rows = mem, device, []

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    @contextlib.contextmanager
    def phase(self, name: str, tokens: int, record: bool = True):
        trim()
        self.sync()
        pid = self.mem.begin()
        t0, c0 = time.perf_counter(), time.process_time()
        info = {}
        yield info
        self.sync()
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak, delta = self.mem.end(pid)
        info.update(seconds=dt, cpu=cpu, peak=peak, delta=delta)
        if record:
            self.rows.append(dict(name=name, seconds=dt, cpu=cpu, tokens=tokens, peak=peak, delta=delta,
                                  **info.get("x", {})))


def print_table(title: str, rows: list[dict]) -> None:
    print(f"\n### {title}\n")
    print("| phase | seconds | CPU s | tokens/s | peak MB | delta MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        tps = f"{r['tokens'] / r['seconds']:,.0f}" if r["tokens"] and r["seconds"] > 0 else "-"
        peak = f"{r['peak'] / MB:,.0f}" if r.get("peak") is not None else "-"
        delta = f"{r['delta'] / MB:,.0f}" if r.get("delta") is not None else "-"
        cpu = f"{r['cpu']:.1f}" if r.get("cpu") is not None else "-"
        print(f"| {r['name']} | {r['seconds']:.3f} | {cpu} | {tps} | {peak} | {delta} |")
    sys.stdout.flush()


# ================================================================================================================
# Model, rollouts
# ================================================================================================================
def build(preset: str, seed: int, device: torch.device, args):
    """A randomly initialised Qwen2 of the preset's shape and the tiny tokenizer (chat template, pad/eos ids);
    big-vocab presets feed random token ids < vocab."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    tiny_model, tok = plumbing.build_tiny(seed)
    p = dict(PRESETS[preset])
    for k in ("hidden", "layers", "vocab"):
        if getattr(args, k, None):
            p[k] = getattr(args, k)
    if preset == "tiny" and not (args.hidden or args.layers or args.vocab):
        model = tiny_model
    else:
        torch.manual_seed(seed)
        config = Qwen2Config(vocab_size=p["vocab"] or len(tok), hidden_size=p["hidden"],
                             intermediate_size=p["inter"] if not args.hidden else 2 * p["hidden"],
                             num_hidden_layers=p["layers"], num_attention_heads=p["heads"],
                             num_key_value_heads=p["kv"], max_position_embeddings=32768,
                             rope_theta=1e6, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                             eos_token_id=[tok.eos_token_id, tok.pad_token_id], bos_token_id=None)
        if preset == "qwen2.5-0.5b":
            config.rms_norm_eps = 1e-6
        model = Qwen2ForCausalLM(config)
        model.generation_config.eos_token_id = [tok.eos_token_id, tok.pad_token_id]
        model.generation_config.pad_token_id = tok.pad_token_id
    del tiny_model
    return model.to(device), tok


def random_prompts(n: int, length: int, vocab: int, avoid: set[int], rng: random.Random) -> list[list[int]]:
    out = []
    for _ in range(n):
        row = []
        while len(row) < length:
            t = rng.randrange(vocab)
            if t not in avoid:
                row.append(t)
        out.append(row)
    return out


@contextlib.contextmanager
def forced_generate(model, new_tokens: int, **extra):
    """Makes vpd.sample's model.generate produce exactly new_tokens tokens (EOS suppressed), with extra options."""
    orig = model.generate
    model.generate = lambda **kw: orig(**{**kw, "min_new_tokens": new_tokens, **extra})
    try:
        yield
    finally:
        del model.generate


def gen_options(mode: str, device: torch.device) -> dict:
    """generate() kwargs of a generation mode (per-prompt is the dynamic cache, one call per prompt)."""
    if mode in ("dynamic", "per-prompt"):
        return {}
    if mode == "static":
        return {"cache_implementation": "static", "disable_compile": True}
    if mode == "static-compile":
        from transformers import CompileConfig
        cc = CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead" if device.type == "cuda"
                           else "default")
        cc._compile_all_devices = True    # transformers only auto-compiles on accelerators otherwise
        return {"cache_implementation": "static", "compile_config": cc}
    raise SystemExit(f"unknown generation mode {mode!r}")


def generate(model, tok, prompts, n, new_tokens, mode, device, eos, dtype):
    """Rollouts through vpd.sample (one batched call, or one call per prompt for mode per-prompt)."""
    with forced_generate(model, new_tokens, **gen_options(mode, device)):
        if mode == "per-prompt":
            return [s for i, p in enumerate(prompts)
                    for s in vpd.sample(model, tok, [p], n, new_tokens, 1.0, 1.0, eos, dtype, *seeds([i]))]
        return vpd.sample(model, tok, prompts, n, new_tokens, 1.0, 1.0, eos, dtype, *seeds(range(len(prompts))))


def make_rollouts(prompts, teacher_prompts, samples, group_size: int, rng: random.Random) -> list[vpd.Rollout]:
    """Synthetic scores: exactly half of every group succeeds (so every GRPO advantage is non-zero); every rollout
    gets a teacher context (the worst case for the M-step)."""
    out = []
    for g in range(len(prompts)):
        wins = [i < group_size // 2 for i in range(group_size)]
        rng.shuffle(wins)
        for j in range(group_size):
            c, text, trunc = samples[g * group_size + j]
            out.append(vpd.Rollout(prompts[g], c, text, trunc, float(wins[j]), wins[j], "feedback",
                                   teacher_prompts[g], "teacher prompt"))
    return out


# ================================================================================================================
# The naive reference M-step
# ================================================================================================================
def naive_m_step(model, teacher, rollouts: list[vpd.Rollout], cfg: vpd.Config, pad: int, dtype) -> float:
    """Whole batch at once, full model(...).logits at every position, full-vocabulary log_softmax for student and
    teacher, then the KL on the completion positions (vpd.divergence), backward."""
    device = next(model.parameters()).device
    comp, mask = plumbing.pad_right([r.completion_ids for r in rollouts], pad, device)
    T = comp.shape[1]

    def logits(m, prompts):
        ids, am = plumbing.pad_left(prompts, pad, device)
        full = torch.cat([ids, comp], 1)
        attn = torch.cat([am, torch.ones_like(comp)], 1)
        pos = (attn.cumsum(1) - 1).clamp(min=0)
        with vpd.autocast(device, dtype):
            return m(input_ids=full, attention_mask=attn, position_ids=pos, use_cache=False).logits

    s_lp = (logits(model, [r.prompt_ids for r in rollouts]).float() / cfg.temperature).log_softmax(-1)
    with torch.no_grad():
        t_lp = (logits(teacher, [r.teacher_ids for r in rollouts]).float() / cfg.temperature).log_softmax(-1)
    div = vpd.divergence(s_lp[:, -T - 1:-1], t_lp[:, -T - 1:-1], cfg.alpha)
    loss = (div * mask).sum() / mask.sum()
    loss.backward()
    return loss.item()


# ================================================================================================================
# Benchmarks
# ================================================================================================================
def seeds(indices) -> list:
    """vpd.sample's per-prompt seeds where it takes them (older vpd.py: none)."""
    return [list(indices)] if "seeds" in inspect.signature(vpd.sample).parameters else []


def new_e_step() -> bool:
    """vpd.py whose e_step steps the optimizer itself (with its trust region's line search)."""
    return "opt" in inspect.signature(vpd.e_step).parameters


def e_optimizer(vpd, model, cfg, opt):
    """The E-step's own optimizer, built as vpd.py's training loop builds it (a --vpd-path older than it: the
    M-step's AdamW, which that code shared)."""
    make = getattr(vpd, "e_optimizer", None)
    if make is None:
        return opt
    try:
        return make(model, cfg, opt)
    except TypeError:       # vpd.py before m-precond: e_optimizer(model, cfg)
        return make(model, cfg)


def bench_algo(algo: str, args, device, mem: Mem) -> dict:
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    model, tok = build(args.preset, args.seed, device, args)
    if args.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    vocab = model.config.vocab_size
    eos, pad = vpd.stop_ids(model, tok), tok.pad_token_id
    avoid = set(eos) | {pad, 0, 1, 2}
    micro = args.micro_batch[0]
    cfg = vpd.Config(algo=algo, batch_prompts=args.prompts, group_size=args.group_size,
                     max_new_tokens=args.new_tokens, micro_batch=micro, temperature=1.0,
                     **({"logit_chunk": args.logit_chunk} if args.logit_chunk else {}),
                     **({"e_optimizer": args.e_optimizer} if args.e_optimizer else {}))
    nseq = args.prompts * args.group_size
    ntok = nseq * args.new_tokens
    teacher_copy = (copy.deepcopy(model).eval().requires_grad_(False) if algo == "sdpo" and args.sdpo_teacher == "ema"
                    else None)
    teacher = teacher_copy if teacher_copy is not None else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, weight_decay=0.0)
    state = {"step": 0, "skipped": 0, "beta": cfg.e_beta, "delta": 0.0, "delta_count": 0}
    e_state = (vpd.EState(cfg.lr) if new_e_step() else vpd.EState(cfg.e_beta, cfg.lr) if hasattr(vpd, "EState")
               else state)   # (older vpd.py: a dict)
    e_opt = e_optimizer(vpd, model, cfg, opt)
    ph = Phases(mem, device)
    nparams = sum(p.numel() for p in model.parameters())
    print(f"\n## {args.preset} / {algo}: {nparams / 1e6:.1f}M params, vocab {vocab}, {args.prompts} prompts x "
          f"{args.group_size} rollouts x {args.new_tokens} new tokens, prompt {args.prompt_len} tokens, teacher "
          f"prompt {args.prompt_len + args.feedback_len}, micro_batch {micro}, device {device}, "
          f"dtype {args.compute_dtype}")

    summary = {}
    for step in range(1, args.steps + 1):
        ph.rows = []
        model.train()
        prompts = random_prompts(args.prompts, args.prompt_len, vocab, avoid, rng)
        t_prompts = [p + q for p, q in zip(prompts, random_prompts(args.prompts, args.feedback_len, vocab, avoid,
                                                                    rng))]
        if args.skip_generation:   # random completions of the same length (memory-focused runs on slow CPUs)
            samples = [(c, "", True) for c in random_prompts(nseq, args.new_tokens, vocab, avoid, rng)]
        else:
            with ph.phase("generation (vpd.sample)", ntok):
                samples = generate(model, tok, prompts, args.group_size, args.new_tokens, "dynamic", device, eos,
                                   args.compute_dtype)
        print(f"[step {step}: rollouts ready, {time.time() - T0:.0f}s]", flush=True)
        rollouts = make_rollouts(prompts, t_prompts, samples, args.group_size, rng)
        assert all(len(r.completion_ids) == args.new_tokens for r in rollouts), "generation not at full length"
        opt.zero_grad(set_to_none=True)
        if algo == "grpo":
            with ph.phase(f"student fwd/bwd (vpd.grpo_step, mb={micro})", ntok):
                m = vpd.grpo_step(model, rollouts, cfg, pad, args.compute_dtype)
        else:
            with ph.phase(f"M-step (vpd.m_step, mb={micro})", ntok):
                m = vpd.m_step(model, teacher, rollouts, cfg, pad, args.compute_dtype)
        with ph.phase("optimizer (plumbing.optimizer_step)", 0):
            plumbing.optimizer_step(model, opt, cfg.lr, cfg.max_grad_norm, m.pop("nonfinite"), state)
            if teacher_copy is not None:
                vpd.ema_update(teacher_copy, model, cfg.ema_tau)
        if algo == "vpd":   # the E-step runs every e_every steps in training; here every step, to measure it
            opt.zero_grad(set_to_none=True)
            if new_e_step():   # gradient, optimizer step and the trust region's reading(s) in one call
                with ph.phase(f"E-step (vpd.e_step, mb={micro}, with its update)", ntok):
                    vpd.e_step(model, model, e_opt, rollouts, cfg, e_state, pad, args.compute_dtype)
            else:
                with ph.phase(f"E-step (vpd.e_step, mb={micro})", ntok):
                    e = vpd.e_step(model, model, rollouts, cfg, e_state, pad, args.compute_dtype)
                with ph.phase("E-step optimizer (plumbing.optimizer_step)", 0):
                    plumbing.optimizer_step(model, e_opt, cfg.lr, cfg.max_grad_norm, e.pop("nonfinite"), state)
        if step == args.steps:
            for key in ("seconds", "cpu"):
                step_s = sum(r[key] for r in ph.rows if not r["name"].startswith("E-step"))
                e_s = sum(r[key] for r in ph.rows if r["name"].startswith("E-step"))
                print(f"step {key} {step_s:.1f}" + (f" (+ E-step on this batch {e_s:.1f} = amortised "
                      f"{step_s + e_s:.1f}: the per-step E-step cost of --e-buffer all, whatever F)"
                      if algo == "vpd" else ""))
                summary[f"step_{key}"], summary[f"amortised_{key}"] = step_s, step_s + e_s
            print_table(f"{args.preset} / {algo}: step {step} of {args.steps} (tokens/s = completion tokens "
                        f"{ntok} / seconds)", ph.rows)
            summary["step_peak"] = max(r["peak"] for r in ph.rows if r.get("peak") is not None)
            summary["step_delta"] = max(r["delta"] for r in ph.rows if r.get("delta") is not None)
            summary["rows"] = list(ph.rows)

    # M-step micro-batch sweep and the naive reference on the last step's rollouts.
    if algo != "grpo" and (len(args.micro_batch) > 1 or args.naive):
        ph.rows = []
        for mb in args.micro_batch:
            c = dataclasses.replace(cfg, micro_batch=mb)
            opt.zero_grad(set_to_none=True)
            with ph.phase(f"M-step vpd.m_step mb={mb}", ntok):
                vpd.m_step(model, teacher, rollouts, c, pad, args.compute_dtype)
        if args.naive:
            opt.zero_grad(set_to_none=True)
            try:
                with ph.phase(f"naive M-step (batch {nseq}, full logits + log_softmax)", ntok):
                    naive_m_step(model, teacher, rollouts, cfg, pad, args.compute_dtype)
            except torch.OutOfMemoryError:   # the reference may not fit on the GPU: say so, keep the other rows
                print("naive M-step: out of memory")
                args.naive = False
                mem.open.clear()
                trim()
                torch.cuda.empty_cache()
        opt.zero_grad(set_to_none=True)
        print_table(f"{args.preset} / {algo}: M-step memory, {nseq} seq x {args.new_tokens} tokens, vocab {vocab}",
                    ph.rows)
        if args.naive:
            naive = ph.rows[-1]
            print("\nratio ours / naive (peak; delta over the step's start = activation memory):")
            for r in ph.rows[:-1]:
                print(f"- {r['name']}: peak {r['peak'] / naive['peak']:.3f}, delta {r['delta'] / naive['delta']:.3f}"
                      f" ({'meets' if r['delta'] <= 0.25 * naive['delta'] else 'misses'} <= 0.25 on delta)")
        summary["sweep"] = list(ph.rows)
    del model, teacher, teacher_copy, opt
    trim()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return summary


def bench_generation(args, device, mem: Mem) -> None:
    model, tok = build(args.preset, args.seed, device, args)
    vocab = model.config.vocab_size
    eos = vpd.stop_ids(model, tok)
    avoid = set(eos) | {tok.pad_token_id, 0, 1, 2}
    rng = random.Random(args.seed)
    ntok = args.prompts * args.group_size * args.new_tokens
    ph = Phases(mem, device)
    base = None
    bf16 = None
    for mode in args.gen_modes:
        warm = {}
        # bf16-*: vpd.py's --gen-weights bf16, a bf16 copy of the weights run without autocast
        if mode.startswith("bf16-") and bf16 is None:
            bf16 = copy.deepcopy(model).to(torch.bfloat16).eval().requires_grad_(False)
        gen, dtype, kind = (bf16, torch.float32, mode[5:]) if mode.startswith("bf16-") else \
            (model, args.compute_dtype, mode)
        if kind == "static-compile":   # compile on a first call (its time is reported), then measure
            prompts = random_prompts(args.prompts, args.prompt_len, vocab, avoid, rng)
            with ph.phase(f"{mode} (first call: compilation)", ntok, record=False) as warm:
                generate(gen, tok, prompts, args.group_size, args.new_tokens, kind, device, eos, dtype)
        times = []
        for rep in range(args.gen_reps):
            prompts = random_prompts(args.prompts, args.prompt_len, vocab, avoid, rng)
            torch.manual_seed(args.seed + rep)
            with ph.phase(mode, ntok, record=False) as info:
                out = generate(gen, tok, prompts, args.group_size, args.new_tokens, kind, device, eos, dtype)
            assert all(len(c) == args.new_tokens for c, _, _ in out)
            times.append(info)
        best = min(times, key=lambda i: i["seconds"])
        base = base or best["seconds"]
        ph.rows.append(dict(name=f"{mode} (best of {args.gen_reps}; x{base / best['seconds']:.2f} vs "
                            f"{args.gen_modes[0]}" + (f"; compile {warm['seconds']:.0f}s" if warm else "") + ")",
                            seconds=best["seconds"], tokens=ntok, peak=max(t["peak"] for t in times),
                            delta=max(t["delta"] for t in times)))
    print_table(f"{args.preset}: generation, {args.prompts} prompts x {args.group_size} rollouts x "
                f"{args.new_tokens} tokens (prompt {args.prompt_len}), device {device}", ph.rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=list(PRESETS))
    p.add_argument("--algo", default="vpd,sdpo,grpo", help="comma list of vpd, sdpo, grpo, or 'none'")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"],
                   help="compute dtype (vpd.compute_dtype): auto = bf16 on CUDA, fp32 on CPU")
    p.add_argument("--prompts", type=int, default=4, help="B: prompts per step")
    p.add_argument("--group-size", type=int, default=8, help="G: rollouts per prompt")
    p.add_argument("--new-tokens", type=int, default=64, help="completion length (forced)")
    p.add_argument("--prompt-len", type=int, default=64, help="student prompt tokens")
    p.add_argument("--feedback-len", type=int, default=64, help="extra tokens in the teacher prompt")
    p.add_argument("--micro-batch", default="4", help="comma list; the first is used by the step, all are swept "
                   "on the M-step when there are several")
    p.add_argument("--naive", action="store_true", help="also run the naive full-vocab M-step (vpd/sdpo)")
    p.add_argument("--steps", type=int, default=2, help="steps per algo; the last one is reported (the first "
                   "allocates AdamW state)")
    p.add_argument("--gen-modes", default="", help="generation comparison: comma list of dynamic, per-prompt, "
                   "static, static-compile, and bf16-<one of those>: the same with a bf16 copy of the weights "
                   "(--gen-weights bf16); the first is the baseline")
    p.add_argument("--gen-reps", type=int, default=2)
    p.add_argument("--grad-checkpointing", action="store_true")
    p.add_argument("--sdpo-teacher", default="ema", choices=["ema", "live"], help="SDPO's teacher: an EMA copy or "
                   "the student's own weights")
    p.add_argument("--logit-chunk", type=int, help="vpd.Config.logit_chunk (default: vpd.py's)")
    p.add_argument("--e-optimizer", choices=["shared", "adamw"],
                   help="vpd.Config.e_optimizer (default: vpd.py's)")
    p.add_argument("--vpd-path", help="directory of the vpd.py to benchmark (default: this checkout's)")
    p.add_argument("--skip-generation", action="store_true", help="random completions instead of vpd.sample "
                   "(the generation phase is then not measured)")
    p.add_argument("--hidden", type=int, help="override the preset's hidden size (intermediate = 2 x hidden)")
    p.add_argument("--layers", type=int, help="override the preset's layer count")
    p.add_argument("--vocab", type=int, help="override the preset's vocabulary")
    p.add_argument("--threads", type=int, help="torch.set_num_threads")
    p.add_argument("--rss-interval-ms", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.micro_batch = [int(x) for x in args.micro_batch.split(",")]
    args.gen_modes = [m for m in args.gen_modes.split(",") if m]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA GPU is visible")
    if args.threads:
        torch.set_num_threads(args.threads)
    # --dtype as vpd.py reads it (auto: bf16 on CUDA), here so that --vpd-path can point at older code
    bf16 = args.dtype == "bfloat16" or (args.dtype == "auto" and device.type == "cuda")
    args.compute_dtype = torch.bfloat16 if bf16 else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# bench_vpd: torch {torch.__version__}, {name}; argv: {' '.join(sys.argv[1:])}")
    mem = Mem(device, args.rss_interval_ms)
    summaries = {}
    t0 = time.time()
    if args.gen_modes:
        bench_generation(args, device, mem)
    for algo in [a for a in args.algo.split(",") if a and a != "none"]:
        summaries[algo] = bench_algo(algo, args, device, mem)
    if summaries:
        print("\n### step peak memory (max over the step's phases)\n")
        print("| algo | peak MB | delta MB | peak / grpo | delta / grpo |")
        print("|---|---:|---:|---:|---:|")
        g = summaries.get("grpo")
        for a, s in summaries.items():
            rp = f"{s['step_peak'] / g['step_peak']:.3f}" if g else "-"
            rd = f"{s['step_delta'] / g['step_delta']:.3f}" if g else "-"
            print(f"| {a} | {s['step_peak'] / MB:,.0f} | {s['step_delta'] / MB:,.0f} | {rp} | {rd} |")
    if device.type == "cpu":
        print(f"\nprocess peak RSS (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
    print(f"total wall time {time.time() - t0:.0f}s")
    mem.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
