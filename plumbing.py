"""Plumbing for vpd.py, kept out of the algorithm's file: loading a model and tokenizer (short name, Hub id,
directory, GGUF, or the offline `tiny`), devices and the compute dtype, more than one process (torchrun: FSDP2 or
replicated weights), run directories (config, metrics.jsonl, samples.jsonl, health warnings), checkpoints (save,
load, resume at any world size), learning curves (python vpd.py --plot RUN_DIR ... --out curves.png), and the
command line built from vpd.Config. `run` below is a vpd.Run."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import time

import torch
import torch.nn.functional as F


class UserError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


TINY_CORPUS = [
    "Q 1 2 = Wrong: you answered 3. The answer is 4. you gave no answer",
    "The following is feedback from your unsuccessful earlier attempt:", "Correct solution:",
    "Correctly solve the original question.", "def solve(x):\n    return x + 1\n", "```python\nprint(1)\n```",
    "An attempt at this question: Feedback on the attempt: what is wrong and how to fix it.",
    "user assistant system The answer is (A) (B) (C) (D) \\boxed{42} Answer: 12 apples cost 3 dollars each.",
]
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SHORT_NAMES = {f"{name}{v}": f"{org}/{name}{v}" for org, names, variants in [
    ("Qwen", [f"Qwen2.5-{s}" for s in ["0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"]], ["", "-Instruct"]),
    ("Qwen", [f"Qwen2.5-Coder-{s}" for s in ["0.5B", "1.5B", "3B", "7B"]], ["", "-Instruct"]),
    ("Qwen", [f"Qwen3-{s}" for s in ["0.6B", "1.7B", "4B", "8B", "14B", "32B"]], ["", "-Base"]),
    ("HuggingFaceTB", [f"SmolLM2-{s}" for s in ["135M", "360M", "1.7B"]], ["", "-Instruct"])]
    for name in names for v in variants}


def build_tiny(seed: int, hidden: int = 128, layers: int = 4):
    """A randomly initialised small Qwen2 and a byte-level BPE tokenizer trained here (ChatML template, pad != eos
    but pad is also a generation EOS id, as in Qwen). Fully offline; deterministic for a seed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False)])
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TINY_CORPUS * 4, trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, tie_word_embeddings=True, pad_token_id=tok.pad_token_id,
                         eos_token_id=[tok.eos_token_id, tok.pad_token_id], bos_token_id=None)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = [tok.eos_token_id, tok.pad_token_id]
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def resolve_model_name(name: str) -> str:
    if name == "tiny" or os.path.isdir(name) or "/" in name:
        return name
    if name in SHORT_NAMES:
        return SHORT_NAMES[name]
    raise UserError(f"unknown model {name!r}: give a Hub id (org/name), a local directory, 'tiny', or a short name "
                    f"such as {', '.join(list(SHORT_NAMES)[:4])}, ... (see README)")


def load_model(cfg):
    """(model in fp32, tokenizer padding left) from cfg.model, cfg.gguf_file, cfg.seed (a vpd.Config)."""
    name = resolve_model_name(cfg.model)
    if name == "tiny":
        return build_tiny(cfg.seed)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    kw = {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}
    try:
        tok = AutoTokenizer.from_pretrained(name, **kw)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32, **kw)
    except Exception as e:  # noqa: BLE001  (any loading failure becomes one line)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise UserError(f"could not load model {name!r} ({type(e).__name__}: {first}); check the name, your "
                        "internet connection / HF cache, or pass a local directory") from None
    if cfg.gguf_file:   # GGUF weights arrive dequantised to fp32: drop the quantizer so save_pretrained works
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return model, tok


def load_for_training(cfg, device: torch.device, dtype: torch.dtype):
    """load_model on `device`, checked for the losses (--topk within the vocabulary, logits = LM head(hidden)), with
    --grad-checkpointing applied. Returns (model, tokenizer)."""
    model, tok = load_model(cfg)
    model.to(device)
    if cfg.topk > model.config.vocab_size:
        raise UserError(f"--topk {cfg.topk} exceeds the vocabulary ({model.config.vocab_size}); use a smaller k")
    check_head(model, dtype)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tok


def device_and_dtype(device: str, dtype: str, gen_cache: str, gen_weights: str = "train"
                     ) -> tuple[torch.device, torch.dtype]:
    """--device and --dtype -> the device and the compute dtype (auto: bf16 on CUDA, fp32 elsewhere)."""
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible; use --device cpu")
    dt = torch.bfloat16 if dtype == "bfloat16" or (dtype == "auto" and dev.type == "cuda") else torch.float32
    if gen_cache == "static" and dt != torch.float32 and gen_weights != "bf16":   # autocast: fp32 keys, bf16 values
        raise UserError("--gen-cache static needs --dtype float32 or --gen-weights bf16 (a static cache holds one "
                        "dtype, bf16 autocast makes keys and values of two); or use --gen-cache dynamic")
    return dev, dt


def autocast(device: torch.device, dtype: torch.dtype):
    """Autocast to the compute dtype, which every caller passes explicitly (vpd.setup resolves --dtype once); none
    for fp32 (and fp64 tests)."""
    if dtype in (torch.float32, torch.float64):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def check_head(model, dtype) -> None:
    """The chunked losses rebuild the logits as LM head(backbone(x)); refuse a model whose forward does more (logit
    soft-capping, scaling), checked once on a short input."""
    ids = torch.tensor([[1, 2, 3]], device=next(model.parameters()).device)
    with torch.no_grad():
        with autocast(ids.device, dtype):
            want = model(input_ids=ids, use_cache=False).logits.float()
            h = model.get_decoder()(input_ids=ids, use_cache=False).last_hidden_state
            got = model.get_output_embeddings()(h).float()
    if not torch.allclose(got, want, rtol=1e-2, atol=1e-2 * want.abs().max().item()):
        raise UserError(f"{type(model).__name__}'s logits are not LM head(final hidden state) (soft-capping or "
                        "scaling?): this model is not supported by the chunked losses")


# ---- more than one process: torchrun, FSDP2 or replicated weights ------------------------------------------------
def init_distributed(device: str) -> tuple[int, int]:
    """(rank, world size). Under torchrun (WORLD_SIZE > 1) joins the process group: NCCL on GPUs, gloo on CPU, one
    GPU per local rank. Without torchrun: (0, 1) and nothing happens."""
    import torch.distributed as dist
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1 or dist.is_initialized():
        return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    gpu = torch.cuda.is_available() and device != "cpu"
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if gpu else "gloo")
    return dist.get_rank(), dist.get_world_size()


def world() -> int:
    import torch.distributed as dist
    return dist.get_world_size() if dist.is_initialized() else 1


def all_sum(values: list[float], device=None) -> list[float]:
    """Element-wise sum over ranks (the values themselves in one process)."""
    import torch.distributed as dist
    if world() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device or _comm_device())
    dist.all_reduce(t)
    return t.tolist()


def all_max(value: int) -> int:
    import torch.distributed as dist
    if world() == 1:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def all_gather_list(items: list) -> list:
    """The concatenation of every rank's list, in rank order (the list itself in one process)."""
    import torch.distributed as dist
    if world() == 1:
        return list(items)
    out = [None] * world()
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def _comm_device():
    import torch.distributed as dist
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def _decoder_states(self, **kw):
    return self.get_decoder()(**kw).last_hidden_state


def decoder_states(model, **kw) -> torch.Tensor:
    """The decoder's final hidden states (no LM head). A model sharded with FSDP2 runs them through its root's
    `decoder_states` method, registered as a forward method, so that the root's parameters (embeddings, final norm,
    the tied LM head) are gathered and stay gathered for the LM head applied afterwards."""
    own = getattr(model, "decoder_states", None)
    return own(**kw) if own is not None else _decoder_states(model, **kw)


def shard(model, mode: str) -> None:
    """--dist fsdp: FSDP2 fully_shard on each decoder layer, then on the root (parameters, gradients and optimizer
    state sharded over the ranks). --dist ddp: weights replicated; optimizer_step all-reduces the gradients."""
    if mode != "fsdp" or world() == 1:
        return
    import types
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method
    for layer in model.get_decoder().layers:
        fully_shard(layer)
    fully_shard(model)
    model.decoder_states = types.MethodType(_decoder_states, model)
    register_fsdp_forward_method(model, "decoder_states")


@torch.no_grad()
def refresh(gen, model) -> None:
    """--gen-weights bf16: the generation copy takes the training weights (cast to bf16; shard by shard under
    FSDP2). Nothing when generation uses the training model itself."""
    if gen is not model:
        reshard(gen, model)
        for g, p in zip(gen.parameters(), model.parameters()):
            g.copy_(p)


def reshard(*models) -> None:
    """FSDP2 keeps a root's parameters gathered after a forward that no backward follows (the LM head is applied
    after the root's forward). Before weights are changed or copied shard by shard, they are resharded here, so
    that the next forward gathers the new values. Nothing for a model that is not sharded."""
    for m in models:
        if m is not None and is_sharded(m):
            m.reshard()


def average_gradients(model) -> None:
    """--dist ddp: every gradient becomes its mean over the ranks (FSDP2 does this in its reduce-scatter)."""
    import torch.distributed as dist
    if world() == 1 or is_sharded(model):
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world()


def reduce_sums(sums: dict) -> tuple[float, float, int]:
    """(loss, mean entropy, number of non-finite micro-batches) of a step's sums, over all ranks."""
    loss, ent, n, bad = all_sum([sums["loss"] / world(), sums["entropy"], sums["entropy_n"], sums["nonfinite"]])
    return loss, ent / max(n, 1), int(bad)


def micro_batches(rows: list, size: int):
    """Consecutive slices of `rows` of at most `size`."""
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def lockstep(rows: list, filler) -> tuple[list, list[float]]:
    """(rows, weights): under torchrun every rank must run as many forward and backward passes as the others
    (FSDP2 gathers weights in each), so a rank with fewer rows gets zero-weight copies of `filler`. One process:
    the rows, all of weight 1."""
    n = all_max(len(rows))
    return rows + [filler] * (n - len(rows)), [1.0] * len(rows) + [0.0] * (n - len(rows))


def global_share(count: float) -> float:
    """The normaliser of a loss summed over this rank's rows: the count over all ranks / the number of ranks, since
    the ranks' gradients are averaged (pitfall 7 across processes)."""
    return all_sum([count])[0] / world()


def clip_gradients(params, max_norm: float) -> float:
    """clip_grad_norm_ over every parameter with a gradient; the norm of the whole gradient (FSDP2: all shards)."""
    norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], max_norm)
    return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)


def is_sharded(model) -> bool:
    """Sharded by shard (FSDP2): its backbone runs through the registered `decoder_states` method."""
    return getattr(model, "decoder_states", None) is not None


def full_state(model, opt=None) -> tuple[dict | None, dict | None]:
    """(model state dict, optimizer state dict), whole and on the CPU, keyed by parameter names, whatever the world
    size (a collective under FSDP2: every rank calls it). Optimizer state keyed by names loads at any world size."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    sd = get_model_state_dict(model, options=opts) if is_sharded(model) else None
    if sd is not None and getattr(model.config, "tie_word_embeddings", False):   # saved once, as save_pretrained does
        head = next(n for n, m in model.named_modules() if m is model.get_output_embeddings())
        sd.pop(f"{head}.weight", None)
    osd = get_optimizer_state_dict(model, opt, options=opts) if opt is not None else None
    return sd, osd


def load_optimizer_state(model, opt, saved: dict) -> None:
    """Loads a state dict written by full_state (names as keys) at any world size; an older one (integer keys, one
    process) with opt.load_state_dict."""
    params = [p for g in saved.get("param_groups", []) for p in g["params"]]
    if params and isinstance(params[0], int):
        opt.load_state_dict(saved)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict
    set_optimizer_state_dict(model, opt, saved, options=StateDictOptions(full_state_dict=True))


def rank() -> int:
    import torch.distributed as dist
    return dist.get_rank() if dist.is_initialized() else 0


# ---- sampling and updating ---------------------------------------------------------------------------------------
def inverse_cdf(w: torch.Tensor, u: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """Token per row drawn with probability w_i / sum(w) (to fp32 rounding of the block sums), from uniforms u in
    [0, 1): the first i whose cumulative weight exceeds u * sum(w). Two levels, so no [n, V] cumulative sum is made:
    the cumulative sums of blocks of `block` tokens pick the block, the cumulative sum inside that one block picks
    the token (cumulative sums in fp64). A token of weight 0 is never drawn. Returns [n, 1]."""
    n, V = w.shape
    blocks = F.pad(w, (0, -V % block)).view(n, -1, block)
    c = F.pad(blocks.sum(-1).double().cumsum(-1), (1, 0))              # [n, 1 + blocks]: weight before each block
    total = c[:, -1:]
    target = torch.minimum(u.double()[:, None] * total, total.nextafter(torch.zeros_like(total)))
    b = (torch.searchsorted(c, target, right=True) - 1).clamp_(0, blocks.shape[1] - 1)   # c[b] <= target < c[b+1]
    inside = blocks[torch.arange(n, device=w.device), b[:, 0]]          # [n, block], the chosen block
    cum = inside.double().cumsum(-1) + c.gather(1, b)
    last = block - 1 - (inside > 0).flip(-1).int().argmax(-1, keepdim=True)   # its last token of weight > 0
    return b * block + torch.minimum(torch.searchsorted(cum, target, right=True), last)


def optimizer_step(model, opt, lr: float, max_grad_norm: float, nonfinite: int, state: dict) -> dict:
    """Average the gradients over ranks (--dist ddp), clip and step; a NaN/inf loss or gradient skips the update
    (counted in state['skipped'])."""
    average_gradients(model)
    grad_norm = clip_gradients(model.parameters(), max_grad_norm)
    if nonfinite or not math.isfinite(grad_norm):
        opt.zero_grad(set_to_none=True)
        state["skipped"] += 1
        print(f"warning: non-finite loss or gradient at step {state['step'] + 1}; update skipped", file=sys.stderr)
        return {"grad_norm": grad_norm, "skipped": 1}
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    return {"grad_norm": grad_norm, "skipped": 0}


# ---- forward passes on completion positions only (memory: never a [n, T, V] tensor of a whole micro-batch) ---
def position_chunks(n_rows: int, n_pos: int, vocab: int, chunk_mb: float) -> list[slice]:
    """Slices of the n_pos completion positions such that n_rows x positions x vocab fp32 logits take <= chunk_mb
    MB (at least one position per chunk)."""
    step = max(1, int(chunk_mb * 2 ** 20) // (4 * vocab * max(n_rows, 1)))
    return [slice(i, min(i + step, n_pos)) for i in range(0, n_pos, step)]


ENTROPY_STRIDE = 8   # the entropy metric reads every 8th completion position (a full softmax costs as much as a loss)


def entropy_positions(x: torch.Tensor, start: int) -> torch.Tensor:
    """The entries of x (dim 1 = completion positions start, start+1, ...) at positions t with t % ENTROPY_STRIDE == 0:
    where the student_entropy metric is read."""
    return x[:, (-start) % ENTROPY_STRIDE::ENTROPY_STRIDE]


def pad_left(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (n - len(r)) + r for r in rows], device=device)
    mask = torch.tensor([[0] * (n - len(r)) + [1] * len(r) for r in rows], device=device)
    return ids, mask


def pad_right(rows: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (n - len(r)) for r in rows], device=device)
    mask = torch.tensor([[1.0] * len(r) + [0.0] * (n - len(r)) for r in rows], device=device)
    return ids, mask


def completion_hidden(model, prompts: list[list[int]], comp: torch.Tensor, pad: int, dtype) -> torch.Tensor:
    """Final hidden states predicting each completion token: [n, T, H], from the backbone alone (the LM head is
    applied later, a chunk of positions at a time). Prompts are left-padded, completions right-padded, so completion
    tokens sit at the same positions in every row."""
    ids, mask = pad_left(prompts, pad, comp.device)
    full = torch.cat([ids, comp], 1)
    attn = torch.cat([mask, torch.ones_like(comp)], 1)
    pos = (attn.cumsum(1) - 1).clamp(min=0)
    with autocast(comp.device, dtype):
        h = decoder_states(model, input_ids=full, attention_mask=attn, position_ids=pos, use_cache=False)
    return h[:, -comp.shape[1] - 1:-1]


def head_logits(model, h: torch.Tensor, temperature: float, dtype) -> torch.Tensor:
    """z / temperature = LM head(h) / temperature, in fp32 (bf16 -> fp32, fp64 kept)."""
    with autocast(h.device, dtype):
        logits = model.get_output_embeddings()(h)
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return logits / temperature if temperature != 1 else logits


def completion_logits(model, prompts: list[list[int]], comp: torch.Tensor, temperature: float, pad: int, dtype):
    """Logits / temperature predicting each completion token: [n, T, V] (tests, warm-up; the losses use chunks)."""
    return head_logits(model, completion_hidden(model, prompts, comp, pad, dtype), temperature, dtype)


def vocab_size(model) -> int:
    return model.get_output_embeddings().weight.shape[0]


def backward_by_chunks(h: torch.Tensor, chunk_loss, chunks: list[slice], sums: dict) -> torch.Tensor:
    """backward() of loss = sum_c chunk_loss(h[:, c], c): each chunk's loss is backpropagated at once into the LM head
    and a detached copy of h (freeing its [n, c, V] tensors), then dL/dh goes once through the backbone. Returns the
    loss, detached; a NaN/inf loss is counted in sums, not propagated (the optimizer step is then skipped)."""
    leaf = h.detach().requires_grad_()
    parts = []
    for c in chunks:
        part = chunk_loss(leaf[:, c], c)
        if part.requires_grad and torch.isfinite(part):
            part.backward()
        parts.append(part.detach())
    loss = torch.stack(parts).sum()
    finite = bool(torch.isfinite(loss))
    sums["nonfinite"] += not finite
    sums["loss"] += loss.item() if finite else 0.0
    # always one backward through the backbone (zeros for a bad loss): every rank must take part under torchrun
    h.backward(leaf.grad if finite and leaf.grad is not None else torch.zeros_like(h))
    return loss


# ---- run directories, logs, checkpoints, curves ------------------------------------------------------------------
def make_run_dir(cfg, resume: tuple[str, dict] | None) -> str:
    """runs/<task>-<algo>-<time>, or --output-dir, with the run's config.json; a resumed run's own directory, its
    logs cut back to the checkpoint (lines logged after it, by a crash, are dropped: those steps run again). Under
    torchrun rank 0 makes it and every rank gets its name."""
    error = None
    if rank() == 0:
        try:
            run_dir = _make_run_dir(cfg, resume)
        except UserError as e:
            run_dir, error = None, str(e)
    run_dir, error = all_gather_list([(run_dir, error)] if rank() == 0 else [])[0]
    if error:
        raise UserError(error)
    return run_dir


def _make_run_dir(cfg, resume: tuple[str, dict] | None) -> str:
    if resume:
        run_dir = os.path.dirname(os.path.abspath(resume[0]))
        for name in ("metrics.jsonl", "samples.jsonl"):
            path = os.path.join(run_dir, name)
            if os.path.exists(path):
                keep = [line for line in open(path) if json.loads(line)["step"] <= resume[1]["state"]["step"]]
                with open(path, "w") as f:
                    f.writelines(keep)
        return run_dir
    task_name = re.sub(r"[^\w.-]+", "_", os.path.basename(cfg.task))   # path/to/my.py:Cls -> my.py_Cls
    run_dir = cfg.output_dir or os.path.join("runs", f"{task_name}-{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    if os.path.exists(os.path.join(run_dir, "metrics.jsonl")):
        raise UserError(f"{run_dir} already holds a run; use --resume {run_dir} or another --output-dir")
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(dataclasses.asdict(cfg), f, indent=1)
    return run_dir


def log_metrics(run_dir: str, m: dict) -> None:
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:   # NaN/inf -> null (strict JSON)
        f.write(json.dumps({k: v if not isinstance(v, float) or math.isfinite(v) else None for k, v in m.items()})
                + "\n")


def log_samples(run_dir: str, step: int, tok, rollouts: list) -> None:
    """A few rollouts per step, with what the teacher read, to samples.jsonl."""
    with open(os.path.join(run_dir, "samples.jsonl"), "a") as f:
        for r in rollouts:
            f.write(json.dumps({"step": step, "prompt": tok.decode(r.prompt_ids), "completion": r.text, "reward":
                                r.reward, "feedback": r.feedback, "teacher_prompt": r.teacher_prompt}) + "\n")


HEALTH = [("frac_context", 0.05, "fewer than 5% of rollouts have a teacher context: the M-step has almost nothing "
                              "to learn from"),
          ("student_entropy", 1e-3, "student entropy is ~0: the policy has collapsed to deterministic outputs"),
          ("grad_norm", 1e-7, "gradient norm is ~0: nothing is being learned"),
          ("completion_len", 1.5, "completions are ~1 token long")]


def health_warnings(recent: list[dict]) -> list[str]:
    """Signs of collapse over the last steps (pitfalls 5, 9), from HEALTH: a metric whose mean over the last >= 10
    steps is below its floor (frac_context only where the last step logged one: not GRPO)."""
    def mean(key):
        vals = [m[key] for m in recent if isinstance(m.get(key), float) and math.isfinite(m[key])]
        return sum(vals) / len(vals) if vals else float("nan")
    return [msg for key, floor, msg in HEALTH
            if len(recent) >= 10 and mean(key) < floor and (key != "frac_context" or key in recent[-1])]


def my_share(n: int) -> range:
    """The contiguous share of n items (prompts) that this rank works on: all of them in one process."""
    return range(rank() * n // world(), (rank() + 1) * n // world())


def progress(run, evaluate):
    """The loop's steps from the one after the checkpoint to --steps, as a progress bar (rank 0's); a run that starts
    at step 0 first logs evaluate() as step 0: where the curves start."""
    from tqdm import tqdm
    if run.state["step"] == 0 and run.cfg.steps > 0:
        m0 = {"step": 0, "time": 0.0, "warmup_loss": run.state["warmup_loss"], **evaluate()}
        if rank() == 0:
            log_metrics(run.run_dir, m0)
    return tqdm(range(run.state["step"] + 1, run.cfg.steps + 1), initial=run.state["step"], total=run.cfg.steps,
                desc=run.run_dir, disable=rank() != 0)


def end_step(run, step: int, m: dict, rollouts: list, dt: float, t_gen: float, evaluate) -> None:
    """A step's bookkeeping: rollout metrics, evaluate() every --eval-every, health warnings, metrics.jsonl and
    samples.jsonl, checkpoint every --save-every (and at the end)."""
    from tqdm import tqdm
    cfg, state = run.cfg, run.state
    state["step"] = step
    state["elapsed"] += dt
    stats = all_sum([len(rollouts), sum(len(r.completion_ids) for r in rollouts), sum(r.reward for r in rollouts),
                     sum(r.success for r in rollouts), sum(r.truncated for r in rollouts),
                     sum(r.teacher_ids is not None for r in rollouts)])      # over every rank's rollouts
    n, ntok, reward, success, truncated, context = stats
    m.update({"step": step, "time": state["elapsed"], "step_seconds": dt, "gen_seconds": t_gen,
              "tokens_per_s": ntok / dt, "reward": reward / n, "success_rate": success / n,
              "completion_len": ntok / n, "truncated_frac": truncated / n, "skipped_steps": state["skipped"]})
    if cfg.algo != "grpo":
        m["frac_context"] = context / n
    if step % cfg.eval_every == 0 or step == cfg.steps:
        m.update(evaluate())
    run.recent = (run.recent + [m])[-20:]
    for w in health_warnings(run.recent):
        if w not in run.warned:
            tqdm.write(f"warning (step {step}): {w}")
            run.warned.add(w)
    logged = all_gather_list(rollouts[:cfg.log_samples])[:cfg.log_samples]
    if rank() == 0:
        log_metrics(run.run_dir, m)
        log_samples(run.run_dir, step, run.tok, logged)
    if step % cfg.save_every == 0 or step == cfg.steps:
        save_checkpoint(run)


def prepare(cfg):
    """The plumbing of vpd.setup: join the process group (torchrun), read the checkpoint to resume from, load the
    task and its data, resolve the device and compute dtype, seed torch, load the model (from the checkpoint with
    --resume), make the run directory. Returns (resume, task, train set, test set, model, tokenizer, dtype, run dir)."""
    import tasks
    _, n = init_distributed(cfg.device)           # torchrun: join the process group; else (0, 1)
    if cfg.batch_prompts % n:
        raise UserError(f"--batch-prompts {cfg.batch_prompts} must be a multiple of the number of processes ({n})")
    resume = load_checkpoint(cfg.resume) if cfg.resume else None
    task = tasks.get_task(cfg.task, cfg.dataset, cfg.unsafe_sandbox)
    train_set, test_set = task.load("train"), task.load("test")
    if not train_set:
        raise UserError(f"task {cfg.task!r} has no training examples")
    device, dtype = device_and_dtype(cfg.device, cfg.dtype, cfg.gen_cache, cfg.gen_weights)
    torch.manual_seed(cfg.seed)
    model, tok = load_for_training(dataclasses.replace(cfg, model=resume[0], gguf_file=None) if resume else cfg,
                                   device, dtype)
    return resume, task, train_set, test_set, model, tok, dtype, make_run_dir(cfg, resume)


def save_checkpoint(run) -> None:
    """run_dir/ckpt, written atomically: the model and tokenizer (save_pretrained), the SDPO teacher and E-step prior
    copies, and trainer_state.pt (trainer state, both optimizers keyed by parameter names, RNG, config), so that
    --resume continues exactly. Whole tensors, gathered from the ranks under torchrun: a run resumes at any world
    size. """
    sd, osd = full_state(run.model, run.opt)              # collectives first: every rank takes part
    e_osd = full_state(run.model, run.e_opt)[1] if run.e_opt not in (None, run.opt) else None
    held = [(name, m) for name, m in (("teacher", run.teacher), ("prior", run.prior)) if m is not run.model]
    copies = {name: full_state(m)[0] for name, m in held}
    buffer = all_gather_list([dataclasses.asdict(r) for r in run.buffer])
    if rank() == 0:
        run.state.update(data_rng=run.data_rng.getstate(), buffer=buffer, e=dataclasses.asdict(run.es))
        tmp, final, old = (os.path.join(run.run_dir, d) for d in ("ckpt.tmp", "ckpt", "ckpt.old"))
        shutil.rmtree(tmp, ignore_errors=True)
        run.model.save_pretrained(tmp, **({"state_dict": sd} if sd is not None else {}))
        run.tok.save_pretrained(tmp)
        for name, m in held:
            m.save_pretrained(os.path.join(tmp, name), **({"state_dict": copies[name]} if copies[name] else {}))
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
               else None}
        torch.save({"state": run.state, "optimizer": osd, "rng": rng, "e_optimizer": e_osd,
                    "config": dataclasses.asdict(run.cfg)}, os.path.join(tmp, "trainer_state.pt"))
        if os.path.exists(final):
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    all_gather_list([])                                   # a barrier: no rank goes on before the files are there


def load_checkpoint(path: str) -> tuple[str, dict]:
    """Returns (checkpoint dir, saved trainer state) from a run dir or its ckpt/ dir; older checkpoints upgraded."""
    ckpt = path if os.path.exists(os.path.join(path, "trainer_state.pt")) else os.path.join(path, "ckpt")
    try:
        saved = torch.load(os.path.join(ckpt, "trainer_state.pt"), weights_only=False)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"cannot resume from {path!r} ({type(e).__name__}): give a run directory written by "
                        "vpd.py (it holds ckpt/trainer_state.pt)") from None
    st, c = saved["state"], saved["config"]
    if "e" not in st:   # written before the E-step state was one object (vpd.EState): beta, delta, delta_count
        st["e"] = {"beta": st["beta"], "lr": c.get("e_lr") or c["lr"], "ratio_mean": st["delta"] / st["beta"],
                   "count": st["delta_count"]}
    for gone in ("e_target_kl", "e_adapt"):   # settings of the teacher-student KL controller, now the trust region
        c.pop(gone, None)
    if c.get("e_optimizer") in ("sign", "m-precond"):   # stateless E-step optimizers, removed: the closest is the
        c["e_optimizer"] = "shared"                      # shared AdamW (no state of its own either)
    if "ratio_mean" in st["e"]:   # before delta was weighted by rollouts: one weight per E-step
        e = st["e"]
        st["e"] = {"lr": e["lr"], "delta_sum": e["beta"] * e["ratio_mean"] * e["count"], "delta_n": e["count"]}
    return ckpt, saved


def restore_copies(ckpt: str, model, teacher, prior) -> None:
    """The SDPO teacher and E-step prior from a checkpoint, where they are copies (not the model), before sharding."""
    for name, m in (("teacher", teacher), ("prior", prior)):
        if m is not model:
            m.load_state_dict(type(model).from_pretrained(os.path.join(ckpt, name)).state_dict())


def restore_checkpoint(run, ckpt: str, saved: dict) -> None:
    """Trainer state, optimizers and RNG from a checkpoint (the model and the copies were loaded from it). The buffered
    rollouts are shared out again over the ranks, whatever their number when they were saved."""
    run.state = saved["state"]
    buffer = run.state["buffer"]
    run.state["buffer"] = buffer[rank() * len(buffer) // world():(rank() + 1) * len(buffer) // world()]
    load_optimizer_state(run.model, run.opt, saved["optimizer"])
    if run.e_opt not in (None, run.opt) and saved.get("e_optimizer"):   # (checkpoints from before it had none)
        load_optimizer_state(run.model, run.e_opt, saved["e_optimizer"])
    torch.set_rng_state(saved["rng"]["torch"])
    if saved["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["rng"]["cuda"])


def plot(run_dirs: list[str], out: str) -> None:
    """Runs named NAME-sN (seeds) are grouped: mean line and min-max band per group, one colour each."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UserError("--plot needs matplotlib (optional dependency): pip install matplotlib") from None
    groups: dict[str, list[list[dict]]] = {}
    for d in run_dirs:
        path = os.path.join(d, "metrics.jsonl")
        if not os.path.exists(path):
            raise UserError(f"{d} has no metrics.jsonl; pass run directories written by vpd.py")
        rows = [r for r in map(json.loads, open(path)) if r.get("eval/pass@1") is not None]
        groups.setdefault(re.sub(r"-s\d+$", "", os.path.basename(os.path.normpath(d))), []).append(rows)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    for row, (key, what) in enumerate([("eval/pass@1", "student pass@1 (held-out, no feedback)"),
                                       ("eval/teacher_success", "teacher success (with feedback)")]):
        for col, (x, xlabel) in enumerate([("step", "step"), ("time", "wall time (s)")]):
            ax = axes[row][col]
            for label, runs in groups.items():
                n = min(len(r) for r in runs)
                ys = [[r[i].get(key) if r[i].get(key) is not None else float("nan") for r in runs] for i in range(n)]
                xs = [sum(r[i][x] for r in runs) / len(runs) for i in range(n)]
                line, = ax.plot(xs, [sum(y) / len(y) for y in ys], label=f"{label} (n={len(runs)})")
                ax.fill_between(xs, [min(y) for y in ys], [max(y) for y in ys], alpha=0.15, color=line.get_color())
            ax.set(xlabel=xlabel, ylabel=what, ylim=(-0.02, 1.02))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=72)
    print(f"wrote {out}")


# ---- the run's settings and the command line ------------------------------------------------------------------
def arg(default, help, **kw):
    """A config field: its default, its --help text, and metadata (type, choices; check: a rule of RULES; needs)."""
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass
class Settings:
    """The settings of a run that are not the algorithm's (vpd.Config adds those): model, data, devices,
    processes, memory, checkpoints."""
    model: str = arg("Qwen2.5-0.5B", "short name (Qwen2.5-0.5B, SmolLM2-135M, ...), Hub id, directory, or tiny")
    gguf_file: str = arg(None, "load the model from this GGUF file inside --model's directory", type=str)
    dataset: str = arg(None, "task dataset (humaneval, mbpp, livecodebench, gsm8k, qa:PATH, ...)", type=str)
    unsafe_sandbox: bool = arg(False, "code task without namespaces: weak isolation (files and network reachable)")
    device: str = arg("auto", "auto | cpu | cuda | cuda:N")
    dtype: str = arg("auto", "compute dtype: auto = bf16 on CUDA, else fp32", choices=["auto", "float32", "bfloat16"])
    dist: str = arg("fsdp", "under torchrun: FSDP2 (weights, gradients, optimizer state sharded) or ddp (replicated)",
                    choices=["fsdp", "ddp"])
    gen_cache: str = arg("dynamic", "generate's KV cache (static: --dtype float32 or --gen-weights bf16)",
                         choices=["dynamic", "static"])
    gen_weights: str = arg("train", "generate with the training weights (under --dtype autocast) or with a bf16 copy "
                           "refreshed after every update", choices=["train", "bf16"])
    micro_batch: int = arg(4, "sequences per forward/backward (memory); losses are normalised over the whole batch",
                           check=">= 1")
    logit_chunk: float = arg(24.0, "MB of fp32 full-vocabulary logits per chunk of completion positions", check="> 0")
    grad_checkpointing: bool = arg(False, "activation checkpointing (less memory, slower)")
    output_dir: str = arg(None, "run directory (default runs/<task>-<algo>-<time>)", type=str)
    save_every: int = arg(50, "checkpoint every N steps (and at the end)", check=">= 1")
    log_samples: int = arg(2, "rollouts per step written to samples.jsonl")
    resume: str = arg(None, "continue this run directory; only --steps --device --dist --unsafe-sandbox may change",
                      type=str)


class Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, no usage dump
        raise UserError(f"{message} (see python vpd.py --help)")


def config_parser(config_cls, presets: dict, description: str, epilog: str) -> Parser:
    """One flag per field of the dataclass `config_cls` (--e-lr for e_lr; help, type and choices from the field's
    metadata, the presets that change its default listed), each with default None so that the flags given can be
    told apart; plus --plot and --out."""
    p = Parser(description=description, epilog=epilog)
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        preset = ", ".join(f"{t}={v[f.name]}" for t, v in presets.items() if f.name in v)
        help_text = meta["help"] + (f" [default {f.default}" + (f"; presets: {preset}]" if preset else "]"))
        kind = ({"action": argparse.BooleanOptionalAction} if isinstance(f.default, bool) else
                {"type": meta.get("type") or type(f.default), "choices": meta.get("choices")})
        p.add_argument("--" + f.name.replace("_", "-"), default=None, help=help_text, **kind)
    p.add_argument("--plot", nargs="+", metavar="RUN_DIR", help="draw learning curves of these runs and exit")
    p.add_argument("--out", default="curves.png", help="output PNG for --plot")
    return p


RULES = {">= 0": lambda v: v >= 0, ">= 1": lambda v: v >= 1, ">= 2": lambda v: v >= 2, "> 0": lambda v: v > 0,
         "in [0, 1]": lambda v: 0 <= v <= 1, "in (0, 1]": lambda v: 0 < v <= 1}


def check_ranges(cfg) -> None:
    """Every field of the config whose metadata has a `check` (a key of RULES) must satisfy it (None passes)."""
    for f in dataclasses.fields(cfg):
        value, rule = getattr(cfg, f.name), f.metadata.get("check")
        if rule and value is not None and not RULES[rule](value):
            raise UserError(f"--{f.name.replace('_', '-')} must be {rule}, got {value}")


def parse_config(config_cls, presets: dict, argv, description: str, epilog: str):
    """(config, parsed arguments): the preset of --task under the flags given, or with --resume the run's saved
    config with only the flags that may change applied. A flag whose field has `needs=(field, value, why)` in its
    metadata is refused unless that field has that value."""
    args = config_parser(config_cls, presets, description, epilog).parse_args(argv)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if getattr(args, f.name) is not None}
    if "resume" in given:   # the run's saved settings; only these may change
        extra = sorted(set(given) - {"resume", "steps", "device", "unsafe_sandbox", "dist"})
        if extra:
            raise UserError("--resume continues a run with its saved settings; only --steps, --device, --dist and "
                            f"--unsafe-sandbox may be given, not --{extra[0].replace('_', '-')}")
        return config_cls(**{**load_checkpoint(given["resume"])[1]["config"], **given}), args
    cfg = config_cls(**{**presets.get(given.get("task", config_cls.task), {}), **given})
    check_ranges(cfg)
    for f in dataclasses.fields(cfg):
        if f.name in given and "needs" in f.metadata and getattr(cfg, f.metadata["needs"][0]) != f.metadata["needs"][1]:
            name, value, why = f.metadata["needs"]
            raise UserError(f"--{f.name} is for --{name} {value} only ({why})")
    return cfg, args


def main(parse, train, argv) -> int:
    """The command line: parse(argv) -> (config, arguments), then train(config) and print the run directory, or
    --plot; a problem with the input is one line on stderr and exit code 2."""
    from tasks import TaskError
    code = 1    # an unexpected exception: its traceback, then exit code 1
    try:
        cfg, args = parse(argv)
        if args.plot:
            plot(args.plot, args.out)
        else:
            run_dir = train(cfg)
            if rank() == 0:
                print(f"run directory: {run_dir}")
        code = 0
        return code
    except (UserError, TaskError) as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
        return code
    finally:
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():
            # Under torchrun: leave the process group, then (unless a traceback is still to be printed) end the
            # process without the interpreter's teardown, in which C++ threads of torch.distributed have aborted
            # finished 2-rank CPU runs ("terminate called without an active exception"). Every file is closed.
            dist.destroy_process_group()
            if code != 1:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
