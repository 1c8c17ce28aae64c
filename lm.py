"""Language-model plumbing for vpd.py: loading a model and tokenizer (short name, Hub id, directory, GGUF, or the
offline `tiny`), autocast to an explicit compute dtype, the check that the logits are the LM head's, and speaking the
chat template (prompts, stop ids, <think> blocks)."""
from __future__ import annotations

import contextlib
import itertools
import math
import os
import re

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
    --grad-checkpointing applied. Returns (model, tokenizer, stop ids)."""
    model, tok = load_model(cfg)
    model.to(device)
    if cfg.topk > model.config.vocab_size:
        raise UserError(f"--topk {cfg.topk} exceeds the vocabulary ({model.config.vocab_size}); use a smaller k")
    check_head(model, dtype)
    if cfg.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tok, stop_ids(model, tok)


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


# ---- sampling inside generate -----------------------------------------------------------------------------------
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


class PolicySampler:
    """A logits processor that draws the next token from nucleus_weights(scores, temperature, top_p) by inverse CDF
    and hands generate scores that are 0 at the drawn token and -inf elsewhere, so generate's greedy argmax takes
    the draw. The distribution is do_sample's; torch.multinomial, which it replaces, dominated a CPU decode step at
    a 152k vocabulary (benchmarks/RESULTS.md, sections 0a and 4). Row i's uniforms come from its own generator
    (`seeds[i]`), so a rollout does not depend on which rows share its batch, or which rank samples it."""

    def __init__(self, temperature: float, top_p: float, seeds: list[int]):
        self.temperature, self.top_p = temperature, top_p
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        w = nucleus_weights(scores, self.temperature, self.top_p)
        u = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(w.device)
        drawn = inverse_cdf(w, u)
        return torch.full_like(scores, -math.inf).scatter_(-1, drawn, 0.0)


def row_seed(*key: int) -> int:
    """A 63-bit seed from integers (run seed, step, prompt index, ...): the same in every process."""
    x = 0x9E3779B97F4A7C15
    for k in key:
        x = ((x ^ (k & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x >> 1


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


def is_sharded(model) -> bool:
    """Sharded by lm.shard (FSDP2): its backbone runs through the registered `decoder_states` method."""
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
