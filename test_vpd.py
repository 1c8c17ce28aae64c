"""Tests of the algorithm in vpd.py, one section per § of docs/algorithm.md (the spec), in its order. Expected
numbers are computed by hand / with plain `math` in the tests, never by the function under test. Tasks, the
sandbox, tokenizers and the plumbing are tested in tests/. Run: python -m pytest -q test_vpd.py (CPU, offline).
"""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import concurrent.futures  # noqa: E402
import copy  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import plumbing  # noqa: E402
import vpd  # noqa: E402

torch.set_num_threads(1)


REPO = os.path.dirname(os.path.abspath(__file__))

D = torch.float64

F32 = torch.float32   # the compute dtype the model-running functions take (fp32 on CPU)


def t64(x):
    return torch.tensor(x, dtype=D)


def logs(p):
    if p and isinstance(p[0], list):
        return t64([[math.log(v) for v in row] for row in p])
    return t64([math.log(v) for v in p])


def kl_py(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


@pytest.fixture(scope="module")
def tiny():
    model, tok = plumbing.build_tiny(0)
    return model, tok


def _rows(tok, eos_id):
    """Hand-made rollouts: different prompt and completion lengths, one without a teacher context."""
    def enc(s):
        return tok(s, add_special_tokens=False)["input_ids"]
    specs = [("Q 1 2 =", "4", True, None, "The answer is 4."),
             ("Q 3 = what is the answer to this longer question", "The answer is 7", False, "9",
              "Wrong: you answered 7."),
             ("Q 5 6 =", "12 apples", False, None, ""),          # no feedback, no sibling: masked out
             ("Q 8 =", "3", False, None, "The answer is 9."),
             ("solve Q 9 9 9 =", "def solve(x):", True, None, "")]   # lone success, no feedback: masked out
    rows = []
    for prompt, comp, ok, sib, fb in specs:
        tp = vpd.teacher_text(prompt, sib, fb, 200)
        rows.append(vpd.Rollout(prompt_ids=vpd.chat_ids(tok, prompt), completion_ids=enc(comp) + [eos_id], text=comp,
                                truncated=False, reward=float(ok), success=ok, feedback=fb,
                                teacher_ids=vpd.chat_ids(tok, tp) if tp else None, teacher_prompt=tp))
    assert sum(r.teacher_ids is None for r in rows) == 2
    return rows


def _logq(model, prompt_ids, comp_ids, pad, temperature=1.0):
    comp = torch.tensor([comp_ids])
    return vpd.token_logprobs(plumbing.completion_logits(model, [prompt_ids], comp, temperature, pad, F32), comp)[0]


def _perturbed_copy(model, seed=7, scale=0.05):
    prior = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return prior


def dataclasses_replace(cfg, **kw):
    return dataclasses.replace(cfg, **kw)


def _env():
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _cli(*args, timeout=240, threads=1):
    env = {**_env(), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return subprocess.run([sys.executable, os.path.join(REPO, "vpd.py"), *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _parallel(jobs: dict) -> dict:
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        futs = {k: ex.submit(f) for k, f in jobs.items()}
        return {k: f.result() for k, f in futs.items()}


def _metrics(run_dir, with_step0=False):
    """metrics.jsonl rows; the step-0 row (evaluation before any update) only when asked for."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return rows if with_step0 else [r for r in rows if r["step"] >= 1]


# ================================================================================================================
# §1 Setting: a rollout ends at its first stop id (pitfall 1); judges see the answer without <think>
# ================================================================================================================
def test_completion_mask_pad_is_eos():
    eos = [2, 0]            # pad 0 is one of the EOS ids (as in Qwen)
    tokens = torch.tensor([[5, 6, 2, 0, 0],      # im_end then pad
                           [5, 0, 0, 0, 0],      # stops on the pad/endoftext id, kept
                           [7, 8, 9, 1, 3],      # no EOS: truncated
                           [2, 0, 0, 0, 0],      # EOS first
                           [4, 3, 1, 1, 2]])     # EOS last
    mask, trunc = vpd.completion_mask(tokens, eos)
    assert mask.int().tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0],
                                   [1, 1, 1, 1, 1]]
    assert trunc.tolist() == [False, False, True, False, False]


def test_completion_mask_union_of_eos_ids():
    tokens = torch.tensor([[5, 9, 1, 1], [5, 7, 9, 1], [5, 5, 5, 5]])
    mask, trunc = vpd.completion_mask(tokens, [7, 9])
    assert mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert trunc.tolist() == [False, False, True]
    mask, _ = vpd.completion_mask(tokens, [9])
    assert mask.int().tolist() == [[1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]


def test_stop_ids_tiny(tiny):
    model, tok = tiny
    ids = vpd.stop_ids(model, tok)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert im_end != eot
    assert ids == [im_end, eot]                   # the template's end of turn first, then the other EOS ids
    assert tok.pad_token_id in ids and tok.pad_token_id != tok.eos_token_id


@pytest.mark.parametrize("text,want", [
    ("plain answer\n", "plain answer\n"),
    ("<think>\nlet me see: 3 or 4?\n</think>\n\nThe answer is 4.", "The answer is 4."),
    ("the template opened the block</think>\n\n```python\nx = 1\n```", "```python\nx = 1\n```"),
    ("<think>truncated while thinking ```python\nprint(0)\n```", ""),
    ("<think>a</think>one <think>b</think>two", "one two")])
def test_strip_thinking(text, want):
    assert vpd.strip_thinking(text) == want


def test_thinking_stripped_before_judges_and_siblings(tiny, monkeypatch):
    """What sample returns (the text the task scores and siblings are built from) has no <think> block."""
    import tasks
    model, tok = tiny
    tok = copy.deepcopy(tok)
    tok.add_tokens(["<think>", "</think>"])
    task = tasks.get_task("toy")
    ex = task.load("train")[0]
    right, wrong = ex["answer"], str((int(ex["answer"]) + 1) % 10)
    eos = vpd.stop_ids(model, tok)
    outs = [f"<think>\nit is {wrong}\n</think>\n\n{right}", f"<think>\nsurely {right}\n</think>\n\n{wrong}"] * 2
    ids = [tok(o, add_special_tokens=False)["input_ids"] + [eos[0]] for o in outs]

    def fake_generate(input_ids, attention_mask, generation_config, **kw):
        return torch.cat([input_ids, plumbing.pad_right(ids, tok.pad_token_id, "cpu")[0]], 1)
    monkeypatch.setattr(model, "generate", fake_generate)
    cfg = vpd.Config(model="tiny", task="toy", group_size=4, feedback="env,sibling")
    rollouts = vpd.collect_rollouts(model, tok, task, [ex], cfg, eos, F32, [0])
    assert [r.text for r in rollouts] == [right, wrong, right, wrong]
    assert [r.success for r in rollouts] == [True, False, True, False]
    assert "<think>" not in rollouts[1].teacher_prompt
    assert f"Correct solution:\n\n{right}\n" in rollouts[1].teacher_prompt
    assert rollouts[0].completion_ids == ids[0]                         # the model is still trained on its thinking


# ================================================================================================================
# §2 The teacher prompt: feedback, a successful sibling, the instruction (pitfall 5)
# ================================================================================================================
def test_teacher_text_none_without_context():
    assert vpd.teacher_text("Q", None, "", 100) is None
    assert vpd.teacher_text("Q", "", "", 100) is None


def test_teacher_text_templates_exact():
    got = vpd.teacher_text("What is 2+2?", "4", "you said 5", 100)
    assert got == ("What is 2+2?\nCorrect solution:\n\n4\n\n"
                   "\nThe following is feedback from your unsuccessful earlier attempt:\n\nyou said 5\n\n"
                   "\n\nCorrectly solve the original question.")
    assert vpd.teacher_text("P", None, "fb", 100) == \
        "P\nThe following is feedback from your unsuccessful earlier attempt:\n\nfb\n\n\n\nCorrectly solve the " \
        "original question."
    assert vpd.teacher_text("P", "sol", "", 100) == "P\nCorrect solution:\n\nsol\n\n\n\nCorrectly solve the " \
        "original question."
    assert got.endswith("Correctly solve the original question.")


def test_teacher_text_truncates_feedback_not_question(tiny):
    _, tok = tiny
    question = "QUESTION " + " ".join(f"w{i}" for i in range(400)) + " END_OF_QUESTION"
    fb = "F" * 5000 + "TAIL_OF_FEEDBACK"
    sib = "S" * 5000 + "TAIL_OF_SIBLING"
    got = vpd.teacher_text(question, sib, fb, 300)
    assert got.startswith(question)
    assert "F" * 300 in got and "F" * 301 not in got and "TAIL_OF_FEEDBACK" not in got
    assert "SSS" not in got and "Correct solution" not in got       # an over-long sibling is left out, not cut
    assert got.endswith("Correctly solve the original question.")
    assert len(got) < len(question) + 1000
    ids = vpd.chat_ids(tok, got)
    header = tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    assert ids[-len(header):] == header
    text = tok.decode(ids)
    assert "END_OF_QUESTION" in text and text.count("w399") == 1


def test_group_contexts_siblings():
    comps = ["a", "b", "c", "d"]
    fbs = ["fa", "fb", "fc", "fd"]
    out = vpd.group_contexts([False, True, False, True], comps, fbs, True)
    assert out == [("b", "fa"), ("d", "fb"), ("b", "fc"), ("b", "fd")]
    for i, (sib, _) in enumerate(out):
        assert sib != comps[i]
    # exactly one success: it gets no sibling, the failures get it
    out = vpd.group_contexts([False, False, True, False], comps, fbs, True)
    assert out == [("c", "fa"), ("c", "fb"), (None, "fc"), ("c", "fd")]
    # no success: no siblings
    assert [s for s, _ in vpd.group_contexts([False] * 4, comps, fbs, True)] == [None] * 4
    # siblings off
    assert [s for s, _ in vpd.group_contexts([True] * 4, comps, fbs, False)] == [None] * 4


def test_group_contexts_sibling_never_cut_takes_one_that_fits():
    code = "```python\ndef f(x):\n    return x + 1\n```"
    long = "```python\n" + "# padding\n" * 50 + "def f(x):\n    return x + 1\n```"
    out = vpd.group_contexts([True, True, True, False], [long, code, long, "bad"], ["", "", "", "fb"], True, 100)
    assert out == [(code, ""), (None, ""), (code, ""), (code, "fb")]     # the long one is skipped, never cut
    got = vpd.teacher_text("P", long, "fb", 100)                        # teacher_text leaves an over-long one out
    assert "Correct solution" not in got and "padding" not in got and "fb" in got
    assert vpd.teacher_text("P", long, "", 100) is None


def test_lone_success_without_feedback_is_masked_out():
    ctx = vpd.group_contexts([True, False], ["ok", "bad"], ["", "wrong"], True)
    assert ctx == [(None, ""), ("ok", "wrong")]
    assert vpd.teacher_text("P", *ctx[0], 100) is None
    assert vpd.teacher_text("P", *ctx[1], 100) is not None


def test_critique_replaces_feedback_of_failed_rollouts_only(tiny, monkeypatch):
    import tasks
    model, tok = tiny
    task = tasks.get_task("toy")
    ex = task.load("train")[0]
    wrong = str((int(ex["answer"]) + 1) % 10)
    fail = vpd.Rollout([1], [2], wrong, False, 0.0, False, task.score(ex, wrong).feedback)
    win = vpd.Rollout([1], [2], ex["answer"], False, 1.0, True, task.score(ex, ex["answer"]).feedback)
    seen = {}

    def fake_sample(model, tok, queries, n, *args):
        seen["queries"] = [tok.decode(q) for q in queries]
        return [([7], "  the answer names the digit  ", False) for _ in queries]

    monkeypatch.setattr(vpd, "sample", fake_sample)
    vpd.add_critiques(model, tok, task, [ex, ex], [fail, win], vpd.Config(model="tiny", task="toy", group_size=2),
                      [0], F32, [11])
    assert fail.feedback == "the answer names the digit"     # the critique is the failed rollout's feedback
    assert win.feedback == ""                                # successes get no critique
    (query,) = seen["queries"]                               # one critique request: the failure's
    assert task.prompt(ex) in query and f"Wrong: you answered {wrong}." in query
    assert "An attempt at this question:\n\n" + wrong in query


# ================================================================================================================
# §4 E-step: BCO against the student prior, delta, both classes, the trust region, the optimizer
# ================================================================================================================
def _logsig(x):
    return math.log(1 / (1 + math.exp(-x)))


def test_bco_loss_hand_case():
    logq, logp = t64([-1.0, -3.0]), t64([-2.0, -2.0])
    loss, r = vpd.bco_loss(logq, logp, t64([1.0, 0.0]), 0.1, 0.05)
    r1, r2 = 0.1 * (-1 + 2), 0.1 * (-3 + 2)
    want = 0.5 * (-_logsig(r1 - 0.05) - _logsig(-(r2 - 0.05)))
    assert loss.item() == pytest.approx(want, abs=1e-12)
    assert r.tolist() == pytest.approx([r1, r2], abs=1e-12)


def test_bco_loss_gradient_only_through_logq_and_r_detached():
    logq = t64([-1.0, -3.0]).requires_grad_()
    logp = t64([-2.0, -2.0]).requires_grad_()
    loss, r = vpd.bco_loss(logq, logp, t64([1.0, 0.0]), 0.1, 0.05)
    assert not r.requires_grad
    loss.backward()
    assert logp.grad is None or logp.grad.abs().max().item() == 0.0
    # dL/dlogq_i = (1/n) * beta * (sigmoid(z) - s)
    z = [0.1 - 0.05, -0.1 - 0.05]
    sig = [1 / (1 + math.exp(-v)) for v in z]
    want = [0.5 * 0.1 * (sig[0] - 1), 0.5 * 0.1 * (sig[1] - 0)]
    assert logq.grad.tolist() == pytest.approx(want, abs=1e-12)


def test_delta_update_weights_by_rollouts():
    """delta = sum r~ / number of rollouts: a micro-batch of 3 rollouts weighs 3x one of 1."""
    total, n = vpd.delta_update(0.0, 0.0, t64([1.0, 2.0, 3.0]))
    assert (total, n) == (6.0, 3)
    total, n = vpd.delta_update(total, n, t64([-10.0]))
    assert (total, n) == (-4.0, 4) and total / n == -1.0          # not (2 + -10) / 2 = -4, the per-batch mean


def test_next_e_lr_moves_toward_the_target_from_above_and_below_within_bounds():
    b = (1e-6, 1e-2)
    assert vpd.next_e_lr(1e-4, 0.02, 0.01, 1.0, b) == pytest.approx(1e-4 / 1.5)   # over 1.5 x target: smaller
    assert vpd.next_e_lr(1e-4, 0.005, 0.01, 1.0, b) == pytest.approx(1.5e-4)      # under target / 1.5: larger
    assert vpd.next_e_lr(1e-4, 0.012, 0.01, 1.0, b) == 1e-4                        # in the band: kept
    assert vpd.next_e_lr(1e-4, 0.012, 0.01, 0.25, b) == pytest.approx(2.5e-5)     # kept at 1/4 size: lr x 1/4
    assert vpd.next_e_lr(1e-4, 0.005, 0.01, 0.25, b) == pytest.approx(1e-4 / 4 * 1.5)
    assert vpd.next_e_lr(9e-3, 0.0, 0.01, 1.0, b) == 1e-2                          # hard upper bound
    assert vpd.next_e_lr(2e-6, 1.0, 0.01, 1 / 32, b) == 1e-6                       # hard lower bound
    for bad in (float("nan"), float("inf")):                                       # a bad reading changes nothing
        assert vpd.next_e_lr(1e-4, bad, 0.01, 1.0, b) == 1e-4
        assert vpd.next_e_lr(1e-4, 0.02, 0.01, bad, b) == 1e-4


def test_kl_k3_hand_cases_and_unbiased_in_expectation():
    """k3 = (q/p - 1) - log(q/p) per sampled token: p = 0.5, q = 0.25 gives (0.5 - 1) + log 2; zero where q = p;
    and its mean under p is KL(p || q) exactly (sum_v p_v k3_v = sum_v q_v - 1 + KL = KL)."""
    got = vpd.kl_k3(logs([0.5, 0.3]), logs([0.25, 0.3]))
    assert got.tolist() == pytest.approx([-0.5 + math.log(2.0), 0.0], abs=1e-12)
    p, q = [0.7, 0.2, 0.1], [0.2, 0.5, 0.3]
    assert float((t64(p) * vpd.kl_k3(logs(p), logs(q))).sum()) == pytest.approx(kl_py(p, q), abs=1e-12)


def _manual_bco(model, prior, rows, pad, beta, delta):
    """Per-row (unbatched) BCO loss with log pi detached, plus the implicit rewards."""
    used = [r for r in rows if r.teacher_ids is not None]
    logq = torch.stack([_logq(model, r.teacher_ids, r.completion_ids, pad).sum() for r in used])
    with torch.no_grad():
        logp = torch.stack([_logq(prior, r.prompt_ids, r.completion_ids, pad).sum() for r in used])
    r = beta * (logq - logp)
    s = torch.tensor([float(x.success) for x in used])
    z = r - delta
    loss = -(s * torch.nn.functional.logsigmoid(z) + (1 - s) * torch.nn.functional.logsigmoid(-z)).mean()
    return loss, r.detach(), s


def _e_grads(model, prior, rows, cfg, pad, delta=(0.0, 0.0)):
    model.zero_grad(set_to_none=True)
    d = list(delta)
    rows = vpd.e_rows(rows)
    out = vpd.e_gradient(model, prior, rows, [1.0] * len(rows), cfg, d, pad, F32)
    return out, d, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_e_gradient_initial_prior_uses_prior_logprobs_and_grads_only_teacher_branch(tiny):
    base, tok = tiny
    pad, eos_id = tok.pad_token_id, tok.eos_token_id
    rows = _rows(tok, eos_id)
    model = copy.deepcopy(base).train()
    prior = _perturbed_copy(model)            # requires_grad left on: e_gradient itself must not give it grads
    cfg = vpd.Config(model="tiny", e_prior="initial", micro_batch=10, temperature=1.0, e_beta=0.1)
    out, d, got = _e_grads(model, prior, rows, cfg, pad, delta=(0.06, 3.0))     # history: 3 rollouts, r~ sum 0.06
    with torch.no_grad():
        r = []
        for x in rows:
            if x.teacher_ids is None:
                continue
            lq = sum(_logq(model, x.teacher_ids, x.completion_ids, pad).tolist())
            lp = sum(_logq(prior, x.prompt_ids, x.completion_ids, pad).tolist())
            lp_model = sum(_logq(model, x.prompt_ids, x.completion_ids, pad).tolist())
            r.append((0.1 * (lq - lp), 0.1 * (lq - lp_model), x.success))
    assert len(r) == 3 and (0.1 * (out["logq"] - out["logp"])).tolist() == pytest.approx([v for v, _, _ in r], abs=1e-5)
    assert abs(sum(v for v, _, _ in r) - sum(v for _, v, _ in r)) > 1e-3      # the perturbation matters
    delta = (0.06 + sum(v for v, _, _ in r)) / (3 + 3)   # BCO: this batch's rewards are in delta before the loss
    assert d == [pytest.approx(0.06 + sum(v for v, _, _ in r), abs=1e-5), 6]
    assert all(p.grad is None for p in prior.parameters())
    assert got and max(g.abs().max().item() for g in got.values()) > 0
    ref = copy.deepcopy(base).train()
    loss, _, _ = _manual_bco(ref, prior, rows, pad, 0.1, delta)
    loss.backward()
    for n, p in ref.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6, rtol=1e-4), n


def test_e_gradient_dynamic_prior_gradient_only_through_teacher(tiny):
    base, tok = tiny
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)
    model = _perturbed_copy(base, seed=3)    # any weights; prior = the student itself
    cfg = vpd.Config(model="tiny", micro_batch=10, temperature=1.0, e_beta=0.5)
    out, d, got = _e_grads(model, model, rows, cfg, pad, delta=(-0.1, 1.0))
    ref = copy.deepcopy(model)
    _, r, _ = _manual_bco(ref, ref, rows, pad, 0.5, 0.0)
    delta = (-0.1 + r.sum().item()) / 4
    ref.zero_grad(set_to_none=True)
    _manual_bco(ref, ref, rows, pad, 0.5, delta)[0].backward()
    ref2 = copy.deepcopy(model)               # the loss with the prior branch carrying gradient: must differ
    used = [x for x in rows if x.teacher_ids is not None]
    lq = torch.stack([_logq(ref2, x.teacher_ids, x.completion_ids, pad).sum() for x in used])
    lp = torch.stack([_logq(ref2, x.prompt_ids, x.completion_ids, pad).sum() for x in used])
    z = 0.5 * (lq - lp) - delta
    s = torch.tensor([float(x.success) for x in used])
    (-(s * torch.nn.functional.logsigmoid(z) + (1 - s) * torch.nn.functional.logsigmoid(-z)).mean()).backward()
    diff = 0.0
    for (n, q), q2 in zip(ref.named_parameters(), ref2.parameters()):
        assert torch.allclose(got[n], q.grad, atol=1e-6, rtol=1e-4), n
        diff = max(diff, (q.grad - q2.grad).abs().max().item())
    assert diff > 1e-5


def test_e_gradient_delta_takes_each_micro_batch_in_before_its_loss(tiny):
    """As TRL's BCO: micro-batch j's loss uses delta over all rollouts so far, its own included; no extra pass. At a
    first E-step with micro-batches of 2: delta_1 = mean r~ of rows 1-2, delta_2 = mean of rows 1-3."""
    base, tok = tiny
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)
    model, prior = copy.deepcopy(base), _perturbed_copy(base, seed=4)
    cfg = vpd.Config(model="tiny", micro_batch=2, e_beta=0.3)
    out, d, got = _e_grads(model, prior, rows, cfg, pad)
    used = [x for x in rows if x.teacher_ids is not None]
    ref = copy.deepcopy(base)
    lq = torch.stack([_logq(ref, x.teacher_ids, x.completion_ids, pad).sum() for x in used])
    with torch.no_grad():
        lp = torch.stack([_logq(prior, x.prompt_ids, x.completion_ids, pad).sum() for x in used])
    r = 0.3 * (lq - lp)
    deltas = [r[:2].mean().item()] * 2 + [r.mean().item()]
    assert abs(deltas[0] - deltas[2]) > 1e-4 and d[1] == 3
    assert d[0] / d[1] == pytest.approx(r.mean().item(), abs=1e-6)
    s = torch.tensor([float(x.success) for x in used])
    z = r - torch.tensor(deltas)
    (-(s * torch.nn.functional.logsigmoid(z) + (1 - s) * torch.nn.functional.logsigmoid(-z)).mean()).backward()
    for n, p in ref.named_parameters():
        assert torch.allclose(got[n], p.grad, atol=1e-6, rtol=1e-4), n


def _both_classes(rows):
    return [r for r in rows if r.teacher_ids is not None]


def test_e_step_skips_unless_both_classes_have_a_context(tiny):
    """BCO on one class alone only pushes that class's likelihood one way: such an E-step changes nothing."""
    base, tok = tiny
    rows = _rows(tok, tok.eos_token_id)
    for keep in ([r for r in rows if not r.success], [r for r in rows if r.success], []):
        model = copy.deepcopy(base)
        before = [p.detach().clone() for p in model.parameters()]
        es = vpd.EState(lr=1e-3, delta_sum=0.5, delta_n=2.0)
        out = vpd.e_step(model, model, torch.optim.AdamW(model.parameters()), keep, vpd.Config(model="tiny"), es,
                         tok.pad_token_id, F32)
        assert out["E/skipped"] == 1 and "E/loss" not in out
        assert es == vpd.EState(lr=1e-3, delta_sum=0.5, delta_n=2.0)
        assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))
    # the lone success of _rows has no context; with one borrowed it takes part
    lone = next(r for r in rows if r.success and r.teacher_ids is None)
    assert vpd.e_rows(rows) == [(r, r.teacher_ids) for r in rows if r.teacher_ids]
    lone.borrowed_ids = [1, 2, 3]
    assert (lone, [1, 2, 3]) in vpd.e_rows(rows)


def test_lone_success_borrows_a_failed_group_mates_feedback_for_the_e_step(tiny, monkeypatch, tmp_path):
    """--feedback env: a success has no feedback, so without a sibling it has no context. For the E-step (VPD
    only) it borrows the teacher context built from the first failed group-mate's feedback; the M-step's contexts
    are unchanged."""
    import tasks
    model, tok = tiny
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "What is 2 + 3?", "answer": "5"}) + "\n")
    task = tasks.get_task("qa", f"qa:{path}")
    ex = task.load("train")[0] if task.load("train") else task.load("test")[0]
    texts = ["5", "7", "8", "5"]
    monkeypatch.setattr(vpd, "sample", lambda *a, **k: [([3, tok.eos_token_id], t, False) for t in texts])
    for algo, want_borrowed in (("vpd", True), ("sdpo", False)):
        cfg = vpd.Config(model="tiny", task="qa", group_size=4, feedback="env", algo=algo)
        rs = vpd.collect_rollouts(model, tok, task, [ex], cfg, [tok.eos_token_id], F32, [0])
        assert [r.success for r in rs] == [True, False, False, True]
        assert [r.teacher_ids is None for r in rs] == [True, False, False, True]      # the M-step's contexts
        want = vpd.chat_ids(tok, vpd.teacher_text(task.prompt(ex), None, rs[1].feedback, cfg.feedback_max_chars))
        assert rs[1].feedback.startswith('You answered "7", which is wrong')
        assert [r.borrowed_ids for r in rs] == ([want, None, None, want] if want_borrowed else [None] * 4)


def _toy_rows(tok, task, examples):
    """One success (the right digit) and one failure (a wrong digit) per example, each with its env feedback."""
    rows = []
    for ex in examples:
        for ans in (ex["answer"], str((int(ex["answer"]) + 1) % 10)):
            score = task.score(ex, ans)
            prompt = task.prompt(ex)
            rows.append(vpd.Rollout(vpd.chat_ids(tok, prompt), tok(ans)["input_ids"] + [tok.eos_token_id], ans,
                                    False, score.reward, score.reward == 1.0, score.feedback,
                                    vpd.chat_ids(tok, vpd.teacher_text(prompt, None, score.feedback, 2000))))
    return rows


def _margin(model, rows, pad):
    """Mean (log q(y|x,C) - log pi(y|x)) of successes minus that of failures (the BCO implicit-reward margin / beta)."""
    with torch.no_grad():
        comp, mask = plumbing.pad_right([r.completion_ids for r in rows], pad, "cpu")
        def logprob(prompts):
            return (vpd.token_logprobs(plumbing.completion_logits(model, prompts, comp, 1.0, pad, F32), comp) * mask).sum(1)
        logq = logprob([r.teacher_ids for r in rows])
        logp = logprob([r.prompt_ids for r in rows])
    s = torch.tensor([r.success for r in rows])
    d = logq - logp
    return (d[s].mean() - d[~s].mean()).item()


def test_e_step_raises_teacher_margin_on_successes_vs_failures():
    """Fifteen E-steps with the trust region on (its defaults) raise the BCO margin on the training rollouts and on
    held-out ones."""
    import tasks
    torch.manual_seed(0)
    model, tok = plumbing.build_tiny(0)
    task, pad = tasks.get_task("toy"), tok.pad_token_id
    train_rows = _toy_rows(tok, task, task.load("train")[:24])
    held_out = _toy_rows(tok, task, task.load("test"))
    cfg = vpd.Config(model="tiny", task="toy", e_beta=1.0, micro_batch=64, e_lr=1e-3)
    es = vpd.EState(1e-3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    before, before_held = _margin(model, train_rows, pad), _margin(model, held_out, pad)
    logged = [vpd.e_step(model, model, opt, train_rows, cfg, es, pad, F32) for _ in range(15)]
    after, after_held = _margin(model, train_rows, pad), _margin(model, held_out, pad)
    assert after > before + 2.0, (before, after)             # the E-step separates successes from failures
    assert after_held > before_held + 1.0, (before_held, after_held)   # ... on rollouts it never trained on too
    assert logged[-1]["E/reward_margin"] > logged[0]["E/reward_margin"] + 1.0
    assert all(e["E/skipped"] == 0 and e["E/teacher_move"] <= 2 * cfg.e_target_move for e in logged)
    assert es.delta_n == pytest.approx(sum(0.5 ** k for k in range(15)) * len(train_rows))   # decayed rollouts


def _support_kl(before, after, rows, pad, k):
    """Per-token KL(before || after) over before's top-k + tail on the rows' teacher contexts, by plain softmax."""
    total, n = 0.0, 0
    with torch.no_grad():
        for r in rows:
            comp = torch.tensor([r.completion_ids])
            p = plumbing.completion_logits(before, [r.teacher_ids], comp, 1.0, pad, F32)[0].softmax(-1).double()
            q = plumbing.completion_logits(after, [r.teacher_ids], comp, 1.0, pad, F32)[0].softmax(-1).double()
            for t in range(len(r.completion_ids)):
                idx = p[t].topk(k).indices
                pk = p[t][idx].tolist() + [1 - p[t][idx].sum().item()]
                qk = q[t][idx].tolist() + [1 - q[t][idx].sum().item()]
                total += kl_py(pk, qk)
                n += 1
    return total / n


def test_teacher_move_is_the_exact_kl_over_the_support(tiny):
    base, tok = tiny
    pad = tok.pad_token_id
    rows = _both_classes(_rows(tok, tok.eos_token_id))
    moved = _perturbed_copy(base, seed=5, scale=0.02)
    cfg = vpd.Config(model="tiny", micro_batch=2, topk=5, temperature=1.0)
    model = copy.deepcopy(base)
    er, w = vpd.e_rows(rows), [1.0] * len(rows)
    g = vpd.e_gradient(model, model, er, w, cfg, [0.0, 0.0], pad, F32)
    move, logq = vpd.teacher_move(moved, er, w, g["ref"], cfg, pad, F32)
    assert move == pytest.approx(_support_kl(base, moved, rows, pad, 5), rel=1e-4) and move > 1e-4
    assert logq.tolist() == pytest.approx([_logq(moved, r.teacher_ids, r.completion_ids, pad).sum().item()
                                           for r in rows], abs=1e-4)
    assert vpd.teacher_move(model, er, w, g["ref"], cfg, pad, F32)[0] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("e_optimizer", ["shared", "adamw"])
def test_e_step_at_an_absurd_lr_is_brought_back_under_the_target(e_optimizer):
    """An E-step at lr 0.3 would move the teacher far past 2 x --e-target-move per token. The line search halves
    the update until it is inside (or drops it), so the teacher's move, measured independently, stays under the
    limit; the controller lowers the next lr."""
    import tasks
    torch.manual_seed(0)
    model, tok = plumbing.build_tiny(0, hidden=64, layers=2)
    task, pad = tasks.get_task("toy"), tok.pad_token_id
    rows = _toy_rows(tok, task, task.load("train")[:8])
    cfg = vpd.Config(model="tiny", task="toy", e_beta=1.0, micro_batch=64, lr=0.3, e_lr=0.3, topk=5,
                     e_optimizer=e_optimizer)
    es = vpd.EState(0.3)
    opt = vpd.e_optimizer(model, cfg, torch.optim.AdamW(model.parameters(), lr=0.3, weight_decay=0.0))
    before = copy.deepcopy(model)
    for e in range(3):
        prev = copy.deepcopy(model)
        out = vpd.e_step(model, model, opt, rows, cfg, es, pad, F32)
        assert out["E/skipped"] == 0 and (out["E/step_scale"] < 1 or e > 0)
        assert _support_kl(prev, model, rows, pad, 5) <= 2 * cfg.e_target_move + 1e-6
        assert out["E/teacher_move"] == pytest.approx(_support_kl(prev, model, rows, pad, 5), rel=1e-3, abs=1e-7)
        assert out["E/loss_after"] <= out["E/loss"]
    assert es.lr < 0.3 / 8
    full = copy.deepcopy(before)                       # without the line search the same first update moves far more
    opt2 = torch.optim.AdamW(full.parameters(), lr=0.3, weight_decay=0.0)
    er, w = vpd.e_rows(rows), [1.0] * len(rows)
    g = vpd.e_gradient(full, full, er, w, cfg, [0.0, 0.0], pad, F32)
    torch.nn.utils.clip_grad_norm_(full.parameters(), 1.0)
    opt2.step()
    assert vpd.teacher_move(full, er, w, g["ref"], cfg, pad, F32)[0] > 10 * cfg.e_target_move


def test_a_nonfinite_e_step_leaves_weights_delta_and_lr_untouched(tiny):
    """A NaN in the prior's log-probs (one bad batch) skips the update; delta and the controller keep their values,
    so the next E-step is normal (the old code made delta NaN for the rest of the run)."""
    base, tok = tiny
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)
    model, prior = copy.deepcopy(base), copy.deepcopy(base)
    with torch.no_grad():
        next(prior.parameters()).fill_(float("nan"))
    cfg = vpd.Config(model="tiny", e_prior="initial", micro_batch=2)
    es = vpd.EState(lr=1e-4, delta_sum=-1.0, delta_n=4.0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    out = vpd.e_step(model, prior, opt, rows, cfg, es, pad, F32)
    assert out["E/skipped"] == 1
    assert es == vpd.EState(lr=1e-4, delta_sum=-1.0, delta_n=4.0)
    assert all(torch.equal(a, b) and b.grad is None for a, b in zip(before, model.parameters()))
    out = vpd.e_step(model, copy.deepcopy(base), opt, rows, cfg, es, pad, F32)      # the next one runs
    assert out["E/skipped"] == 0 and math.isfinite(out["E/delta"]) and math.isfinite(es.delta_sum)


def test_e_optimizer_shared_or_its_own():
    """shared: the M-step's AdamW itself; adamw: its own moments (M-step momentum never leaks in: after M-steps
    along coordinate 0, an E-step along coordinate 1 moves coordinate 1 by exactly e_lr, coordinate 0 not at all)."""
    w = torch.nn.Parameter(torch.zeros(2, dtype=D))
    model = torch.nn.Module()
    model.w = w
    cfg = vpd.Config(model="tiny", lr=0.1, e_lr=0.01)
    opt = torch.optim.AdamW([w], lr=0.1, weight_decay=0.0)
    assert vpd.e_optimizer(model, dataclasses.replace(cfg, e_optimizer="shared"), opt) is opt
    e_opt, state = vpd.e_optimizer(model, dataclasses.replace(cfg, e_optimizer="adamw"), opt), {"skipped": 0, "step": 0}
    assert e_opt is not opt
    for _ in range(3):                                                  # M-steps: gradient along coordinate 0
        w.grad = t64([1.0, 0.0])
        plumbing.optimizer_step(model, opt, cfg.lr, 10.0, 0, state)
    before = w.detach().clone()
    w.grad = t64([0.0, -0.5])                                           # E-step: gradient along coordinate 1
    plumbing.optimizer_step(model, e_opt, cfg.e_lr, 10.0, 0, state)
    assert (w.detach() - before).tolist() == pytest.approx([0.0, 0.01], abs=1e-9)


# ================================================================================================================
# §5 M-step: the divergence on the student's top-k + tail, token-level, chunked over positions
# ================================================================================================================
S, T = [0.7, 0.2, 0.1], [0.2, 0.5, 0.3]


def test_divergence_alpha0_is_forward_kl_teacher_student():
    got = vpd.divergence(logs(S), logs(T), 0.0).item()
    want = 0.2 * math.log(0.2 / 0.7) + 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.1)
    assert got == pytest.approx(want, abs=1e-12)


def test_divergence_alpha1_is_reverse_kl_student_teacher():
    got = vpd.divergence(logs(S), logs(T), 1.0).item()
    want = 0.7 * math.log(0.7 / 0.2) + 0.2 * math.log(0.2 / 0.5) + 0.1 * math.log(0.1 / 0.3)
    assert got == pytest.approx(want, abs=1e-12)
    # and it is not symmetric: alpha 0 and 1 differ on this case
    assert got != pytest.approx(vpd.divergence(logs(S), logs(T), 0.0).item(), abs=1e-3)


def test_divergence_alpha_half_is_jsd_two_elements():
    s, t = [0.9, 0.1], [0.5, 0.5]
    # M = 0.5 s + 0.5 t = [0.7, 0.3]
    want = 0.5 * (0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)) \
        + 0.5 * (0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3))
    assert vpd.divergence(logs(s), logs(t), 0.5).item() == pytest.approx(want, abs=1e-12)


def test_divergence_generalized_jsd_weights_student_by_one_minus_alpha():
    a = 0.25
    m = [(1 - a) * x + a * y for x, y in zip(S, T)]
    want = (1 - a) * kl_py(S, m) + a * kl_py(T, m)
    assert vpd.divergence(logs(S), logs(T), a).item() == pytest.approx(want, abs=1e-12)
    # the other convention (M = a s + (1-a) t) gives a different number here
    m2 = [a * x + (1 - a) * y for x, y in zip(S, T)]
    assert abs(want - (a * kl_py(S, m2) + (1 - a) * kl_py(T, m2))) > 1e-3


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_divergence_zero_when_equal_and_nonnegative(alpha):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 5, 11, generator=g, dtype=D)
    lp = z.log_softmax(-1)
    assert vpd.divergence(lp, lp, alpha).abs().max().item() < 1e-12
    s = (torch.randn(6, 5, 11, generator=g, dtype=D) * 3).log_softmax(-1)
    t = (torch.randn(6, 5, 11, generator=g, dtype=D) * 3).log_softmax(-1)
    d = vpd.divergence(s, t, alpha)
    assert d.shape == (6, 5)
    assert d.min().item() >= -1e-12
    assert d.max().item() > 1e-3


def test_support_full_vocab_is_log_softmax():
    z = t64([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    got = vpd.support_logprobs(z, None, True)
    e = [math.exp(1), math.exp(2), math.exp(3)]
    want = [[math.log(v / sum(e)) for v in e], [math.log(1 / 3)] * 3]
    assert torch.allclose(got, t64(want), atol=1e-12)


def test_support_topk_normalised_over_full_vocab_before_gather():
    z = logs([1.0, 2.0, 3.0, 4.0])        # probs 0.1 0.2 0.3 0.4
    idx = torch.tensor([3, 2])
    got = vpd.support_logprobs(z, idx, True)
    assert torch.allclose(got, logs([0.4, 0.3, 0.3]), atol=1e-12)
    got = vpd.support_logprobs(z, idx, False)
    assert torch.allclose(got, logs([4 / 7, 3 / 7]), atol=1e-12)


def test_support_topk_tail_sums_to_one_both_sides_with_student_indices():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(3, 4, 50, generator=g, dtype=D) * 2
    t = torch.randn(3, 4, 50, generator=g, dtype=D) * 2
    idx = s.topk(7, -1).indices
    s_lp, t_lp = vpd.support_logprobs(s, idx, True), vpd.support_logprobs(t, idx, True)
    assert s_lp.shape == t_lp.shape == (3, 4, 8)
    assert torch.allclose(s_lp.exp().sum(-1), torch.ones(3, 4, dtype=D), atol=1e-10)
    assert torch.allclose(t_lp.exp().sum(-1), torch.ones(3, 4, dtype=D), atol=1e-10)
    # the teacher's entries are its own full-vocab probabilities at the student's indices
    assert torch.allclose(t_lp[..., :7], t.log_softmax(-1).gather(-1, idx), atol=1e-12)
    # renormalised variant: k entries sum to one
    r = vpd.support_logprobs(t, idx, False)
    assert r.shape == (3, 4, 7)
    assert torch.allclose(r.exp().sum(-1), torch.ones(3, 4, dtype=D), atol=1e-10)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_topk_equal_vocab_with_tail_equals_full_divergence(alpha):
    g = torch.Generator().manual_seed(3)
    s = torch.randn(2, 5, 13, generator=g, dtype=D) * 2
    t = torch.randn(2, 5, 13, generator=g, dtype=D) * 2
    full = vpd.divergence(s.log_softmax(-1), t.log_softmax(-1), alpha)
    idx = s.topk(13, -1).indices
    top = vpd.divergence(vpd.support_logprobs(s, idx, True), vpd.support_logprobs(t, idx, True), alpha)
    assert torch.allclose(top, full, atol=1e-9)
    assert full.min() > 1e-4


@pytest.mark.parametrize("tail", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_topk_divergence_nonnegative_random(alpha, tail):
    g = torch.Generator().manual_seed(4)
    s = torch.randn(64, 40, generator=g, dtype=D) * 4
    t = torch.randn(64, 40, generator=g, dtype=D) * 4
    idx = s.topk(3, -1).indices
    d = vpd.divergence(vpd.support_logprobs(s, idx, tail), vpd.support_logprobs(t, idx, tail), alpha)
    assert d.min().item() >= -1e-12


def test_topk_without_tail_or_renorm_would_go_negative_but_tail_does_not():
    # a case where the raw truncated "KL" sum_k s log(s/t) is negative: the tail bucket fixes it (pitfall 2)
    s = logs([0.5, 0.1, 0.4])
    t = logs([0.9, 0.05, 0.05])
    idx = torch.tensor([0])
    s_lp, t_lp = s.gather(-1, idx), t.gather(-1, idx)
    raw = (s_lp.exp() * (s_lp - t_lp)).sum().item()
    assert raw < 0
    d = vpd.divergence(vpd.support_logprobs(s, idx, True), vpd.support_logprobs(t, idx, True), 1.0).item()
    want = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert d == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.9])
def test_topk_tail_below_1e6_fp32_gradient_matches_float64(alpha):
    """The student's top-k holds all but ~2e-8 of its mass, the teacher's tail is large: with alpha < 1 the loss
    pulls the student's tail up (forward KL: with an O(1) gradient), which 1 - sum_k p in fp32 loses to rounding."""
    g = torch.Generator().manual_seed(0)
    k = 5
    s = torch.zeros(3, 50, dtype=D)
    s[:, :k] = 20.0 + torch.randn(3, k, generator=g, dtype=D)
    t = torch.randn(3, 50, generator=g, dtype=D)
    assert s.softmax(-1)[:, k:].sum(-1).max().item() < 1e-6
    out = {}
    for dt in (torch.float32, D):
        x = s.clone().to(dt).requires_grad_()
        idx = x.detach().topk(k, -1).indices
        loss = vpd.divergence(vpd.support_logprobs(x, idx, True), vpd.support_logprobs(t.to(dt), idx, True), alpha)
        loss.sum().backward()
        out[dt] = loss.detach().double(), x.grad.double()
    (l32, g32), (l64, g64) = out[torch.float32], out[D]
    if alpha == 0:
        assert g64[:, k:].sum(-1).abs().min().item() > 0.5              # forward KL: the tail's gradient is O(1)
    assert torch.allclose(g32[:, k:].sum(-1), g64[:, k:].sum(-1), rtol=1e-4, atol=0)   # the tail's own gradient
    assert torch.allclose(g32, g64, atol=1e-5)
    assert torch.allclose(l32, l64, rtol=1e-5)


def test_token_logprobs_equals_gathered_log_softmax():
    z = logs([[1.0, 2.0, 5.0], [3.0, 3.0, 4.0]])
    got = vpd.token_logprobs(z, torch.tensor([2, 0]))
    assert torch.allclose(got, t64([math.log(5 / 8), math.log(3 / 10)]), atol=1e-12)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(2, 3, 17, generator=g, dtype=D)
    tok = torch.randint(0, 17, (2, 3), generator=g)
    assert torch.allclose(vpd.token_logprobs(z, tok), z.log_softmax(-1).gather(-1, tok[..., None])[..., 0],
                          atol=1e-12)


def test_entropy_hand_cases():
    assert vpd.entropy(torch.full((2, 7), 3.5, dtype=D)).tolist() == pytest.approx([math.log(7)] * 2, abs=1e-12)
    p = [0.5, 0.25, 0.25]
    want = -sum(v * math.log(v) for v in p)
    assert vpd.entropy(logs(p)).item() == pytest.approx(want, abs=1e-12)
    # (near) one-hot: ~0
    assert abs(vpd.entropy(t64([100.0, 0.0, 0.0])).item()) < 1e-10


def test_completion_logits_temperature_and_alignment(tiny):
    model, tok = tiny
    pad = tok.pad_token_id
    p1, p2 = vpd.chat_ids(tok, "Q 1 2 ="), vpd.chat_ids(tok, "a much longer prompt: Q 3 4 = what now")
    c = [tok("The answer is 4", add_special_tokens=False)["input_ids"], [5, 6]]
    comp, _ = plumbing.pad_right(c, pad, "cpu")
    with torch.no_grad():
        l1 = plumbing.completion_logits(model, [p1, p2], comp, 1.0, pad, F32)
        l2 = plumbing.completion_logits(model, [p1, p2], comp, 2.0, pad, F32)
        assert l1.shape == (2, comp.shape[1], model.config.vocab_size)
        assert torch.equal(l1, 2 * l2)
        # row 0 unpadded: position t predicts completion token t
        full = model(input_ids=torch.tensor([p1 + c[0]])).logits[0]
        want = full[len(p1) - 1:len(p1) + len(c[0]) - 1]
        assert torch.allclose(l1[0, :len(c[0])], want, atol=1e-5)
        # row 1 (left-padded prompt) matches its own unpadded forward
        full = model(input_ids=torch.tensor([p2 + c[1]])).logits[0]
        assert torch.allclose(l1[1, :2], full[len(p2) - 1:len(p2) + 1], atol=1e-5)


def _m_grads(base, rows, cfg, pad):
    model = copy.deepcopy(base).train()
    model.zero_grad(set_to_none=True)
    out = vpd.m_step(model, model, rows, cfg, pad, F32)
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("support", ["topk", "full"])
def test_m_step_micro_batch_invariant_and_only_context_rows(tiny, support):
    base, tok = tiny
    base = _perturbed_copy(base, seed=11, scale=0.1)   # make teacher and student disagree more
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)
    ctx_rows = [r for r in rows if r.teacher_ids is not None]
    cfg1 = vpd.Config(model="tiny", micro_batch=1, support=support, topk=5, alpha=0.5)
    cfgn = dataclasses_replace(cfg1, micro_batch=len(rows))
    o1, g1 = _m_grads(base, rows, cfg1, pad)
    on, gn = _m_grads(base, rows, cfgn, pad)
    oc, gc = _m_grads(base, ctx_rows, cfg1, pad)
    assert g1 and max(g.abs().max().item() for g in g1.values()) > 1e-6
    assert o1["M/loss"] == pytest.approx(on["M/loss"], abs=1e-6)
    assert o1["M/loss"] == pytest.approx(oc["M/loss"], abs=1e-9)
    for n in g1:
        assert torch.allclose(g1[n], gn[n], atol=1e-6), n
        assert torch.allclose(g1[n], gc[n], atol=1e-7), n


def test_m_step_loss_value_full_support(tiny):
    base, tok = tiny
    base = _perturbed_copy(base, seed=5, scale=0.1)
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)
    cfg = vpd.Config(model="tiny", micro_batch=2, support="full", alpha=1.0, temperature=2.0)
    out, _ = _m_grads(base, rows, cfg, pad)
    total, ntok = 0.0, 0
    with torch.no_grad():
        for r in rows:
            if r.teacher_ids is None:
                continue
            comp = torch.tensor([r.completion_ids])
            s = plumbing.completion_logits(base, [r.prompt_ids], comp, 1.0, pad, F32)[0].double() / 2.0
            t = plumbing.completion_logits(base, [r.teacher_ids], comp, 1.0, pad, F32)[0].double() / 2.0
            ps, lps, lpt = s.softmax(-1), s.log_softmax(-1), t.log_softmax(-1)
            total += (ps * (lps - lpt)).sum().item()
            ntok += len(r.completion_ids)
    assert out["M/loss"] == pytest.approx(total / ntok, rel=1e-4, abs=1e-6)
    assert out["M/loss"] == pytest.approx(total / ntok, rel=1e-4, abs=1e-6)
    assert total / ntok > 1e-4


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("support", ["full", "topk-all"])
def test_memory_bounded_m_step_equals_naive_full_vocab_loss_float64(tiny, alpha, support):
    """The M-step (logits only at completion positions, micro-batches, support gathered from raw logits) equals a
    naive loss that runs each whole sequence, takes full-vocabulary log-softmax of student and teacher and averages
    D over all completion tokens: values and gradients, float64."""
    base, tok = tiny
    pad = tok.pad_token_id
    base = _perturbed_copy(base, seed=3, scale=0.1).double()
    rows = _rows(tok, tok.eos_token_id)
    vocab = base.config.vocab_size
    cfg = vpd.Config(model="tiny", micro_batch=2, alpha=alpha, temperature=0.7,
                     support="full" if support == "full" else "topk", topk=vocab, tail=True)
    out, grads = _m_grads(base, rows, cfg, pad)                                      # one chunk per micro-batch
    out1, grads1 = _m_grads(base, rows, dataclasses.replace(cfg, logit_chunk=1e-9), pad)   # one position per chunk

    naive = copy.deepcopy(base).train()
    naive.zero_grad(set_to_none=True)
    ctx = [r for r in rows if r.teacher_ids is not None]
    n_tok = sum(len(r.completion_ids) for r in ctx)
    loss = 0.0
    for r in ctx:
        n = len(r.completion_ids)
        s_all = naive(torch.tensor([r.prompt_ids + r.completion_ids])).logits[0] / 0.7
        with torch.no_grad():
            t_all = naive(torch.tensor([r.teacher_ids + r.completion_ids])).logits[0] / 0.7
        s_lp = s_all[len(r.prompt_ids) - 1:len(r.prompt_ids) - 1 + n].log_softmax(-1)
        t_lp = t_all[len(r.teacher_ids) - 1:len(r.teacher_ids) - 1 + n].log_softmax(-1)
        ps, pt = s_lp.exp(), t_lp.exp()
        if alpha == 1.0:
            d = (ps * (s_lp - t_lp)).sum(-1)
        elif alpha == 0.0:
            d = (pt * (t_lp - s_lp)).sum(-1)
        else:
            m_lp = (0.5 * ps + 0.5 * pt).log()
            d = 0.5 * (ps * (s_lp - m_lp)).sum(-1) + 0.5 * (pt * (t_lp - m_lp)).sum(-1)
        loss = loss + d.sum() / n_tok
    loss.backward()
    for o, g in ((out, grads), (out1, grads1)):
        assert o["M/loss"] == pytest.approx(loss.item(), rel=1e-9, abs=1e-12)
        for name, p in naive.named_parameters():
            assert torch.allclose(g[name], p.grad, rtol=1e-7, atol=1e-10), name


def _lm_head_positions(model):
    """Records the number of positions of every LM head call (the second dim of its input)."""
    seen = []
    handle = model.get_output_embeddings().register_forward_hook(lambda m, inp, out: seen.append(inp[0].shape[1]))
    return seen, handle


@pytest.mark.parametrize("step", ["m", "e", "grpo"])
def test_steps_chunked_equal_unchunked_and_head_sees_one_chunk(tiny, step):
    """m_step, e_step, grpo_step with one position per chunk: the same metrics and gradients as one chunk per
    micro-batch, and the LM head never sees more than one position at a time."""
    base, tok = tiny
    base = _perturbed_copy(base, seed=13, scale=0.1).double()
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)[:4]
    for r, rew in zip(rows, [1.0, 0.0, 0.0, 1.0]):
        r.reward, r.success = rew, rew == 1.0
    cfg = vpd.Config(model="tiny", micro_batch=2, group_size=2, support="topk", topk=5, alpha=0.5, temperature=0.8,
                     grpo_std=False)

    def run(c):
        model = copy.deepcopy(base)
        model.zero_grad(set_to_none=True)
        seen, handle = _lm_head_positions(model)
        if step == "m":
            out = vpd.m_step(model, model, rows, c, pad, F32)
        elif step == "e":
            er = vpd.e_rows(rows)
            out = vpd.e_gradient(model, model, er, [1.0] * len(er), c, [0.6, 3.0], pad, F32)
            out = {"logq": out["logq"].tolist(), "logp": out["logp"].tolist(), "k3": out["k3"]}
        else:
            out = vpd.grpo_step(model, rows, c, pad, F32)
        handle.remove()
        return out, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}, seen

    whole, g_whole, seen_whole = run(cfg)
    small, g_small, seen_small = run(dataclasses.replace(cfg, logit_chunk=1e-9))
    assert max(seen_whole) > 1 and max(seen_small) == 1
    assert whole.keys() == small.keys()
    for k in whole:
        assert small[k] == pytest.approx(whole[k], rel=1e-10, abs=1e-12, nan_ok=True), k
    assert g_whole.keys() == g_small.keys() and g_whole
    for n in g_whole:
        assert torch.allclose(g_whole[n], g_small[n], rtol=1e-8, atol=1e-12), n


def test_student_entropy_is_the_mean_over_every_8th_position(tiny):
    """The entropy metric (m_step and grpo_step) = mean of H(pi(.|x, y<t)) over the completion positions
    t = 0, 8, 16, ... inside each row's mask, whatever the chunking."""
    base, tok = tiny
    model = _perturbed_copy(base, seed=17, scale=0.3)
    pad = tok.pad_token_id
    p1, p2 = vpd.chat_ids(tok, "Q 1 2 ="), vpd.chat_ids(tok, "Q 3 =")
    c1 = tok("The answer is (A) (B) (C) (D) 12 apples cost 3", add_special_tokens=False)["input_ids"][:19]
    c2 = list(range(20, 29))
    assert len(c1) == 19 and len(c2) == 9
    rows = [vpd.Rollout(p1, c1, "", True, 1.0, True, "fb", p2 + p1, "t"),
            vpd.Rollout(p2, c2, "", True, 0.0, False, "fb", p1 + p2, "t")]
    ents = []
    with torch.no_grad():
        for r in rows:
            comp = torch.tensor([r.completion_ids])
            z = plumbing.completion_logits(model, [r.prompt_ids], comp, 1.0, pad, F32)[0].double()
            p = z.softmax(-1)
            ents.append(-(p * p.log()).sum(-1))
    sampled = [e.item() for h in ents for e in h[::8]]       # c1: t = 0, 8, 16; c2: t = 0, 8
    assert len(sampled) == 5
    want, n = sum(sampled), len(sampled)
    every = torch.cat(ents).mean().item()
    assert abs(every - want / n) > 1e-3 * every               # reading all positions would fail the test
    for chunk in (vpd.Config.logit_chunk, 3 * 4 * 2 * model.config.vocab_size / 2 ** 20):   # whole / 3 positions
        cfg = vpd.Config(model="tiny", micro_batch=2, group_size=2, support="full", logit_chunk=chunk)
        m = vpd.m_step(copy.deepcopy(model), model, rows, cfg, pad, F32)
        g = vpd.grpo_step(copy.deepcopy(model), rows, cfg, pad, F32)
        assert m["student_entropy"] == pytest.approx(want / n, rel=1e-5)
        assert g["student_entropy"] == pytest.approx(want / n, rel=1e-5)


def test_nonfinite_loss_or_gradient_skips_the_update_and_counts_it(tiny, capsys):
    model = copy.deepcopy(tiny[0])
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    state, sums = {"skipped": 0, "step": 3}, {"loss": 0.0, "nonfinite": 0}
    h = torch.zeros(1, 2, 3, requires_grad=True)                 # a chunked loss that turns NaN: nothing propagated
    plumbing.backward_by_chunks(h, lambda h_c, c: h_c.sum() * float("nan"), [slice(0, 1), slice(1, 2)], sums)
    assert sums == {"loss": 0.0, "nonfinite": 1} and not h.grad.any()      # zeros: every rank takes part
    assert plumbing.optimizer_step(model, opt, 0.1, 1.0, sums["nonfinite"], state)["skipped"] == 1
    next(model.parameters()).grad = torch.full_like(next(model.parameters()), float("inf"))   # inf gradient
    assert plumbing.optimizer_step(model, opt, 0.1, 1.0, 0, state)["skipped"] == 1
    assert state["skipped"] == 2
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert "update skipped" in capsys.readouterr().err
    for p in model.parameters():                              # a finite step does update
        p.grad = torch.ones_like(p)
    assert plumbing.optimizer_step(model, opt, 0.1, 1.0, 0, state)["skipped"] == 0
    assert not torch.equal(before[0], next(model.parameters()))


# ================================================================================================================
# §6 The loop: on-policy sampling, evaluation, the command line, resume
# ================================================================================================================
def _shipped_sampling_settings(model, tok):
    """A model whose generation_config carries the kind of sampling settings instruct checkpoints ship."""
    model = copy.deepcopy(model)
    g = model.generation_config
    g.do_sample, g.temperature, g.top_k, g.top_p, g.min_p = True, 0.3, 5, 0.5, 0.2
    g.repetition_penalty, g.no_repeat_ngram_size, g.typical_p = 1.1, 1, 0.7
    g.bad_words_ids, g.suppress_tokens = [[tok.convert_tokens_to_ids("Q")]], [5, 6]
    return model


def _sample_with_scores(model, tok, prompts, n, new_tokens, temperature, top_p, eos, monkeypatch):
    """vpd.sample, with what its PolicySampler received at each step (generate's logits after every processor
    generate added before it) and the distribution it drew from; both [rows, steps, V]."""
    orig, got = vpd.PolicySampler.__call__, {"scores": [], "probs": []}

    def call(self, input_ids, scores):
        got["scores"].append(scores.clone())
        w, full = (vpd.nucleus_weights(scores, self.temperature, p) for p in (self.top_p, 1.0))
        got["probs"].append(w / full.sum(-1, keepdim=True))                 # softmax, 0 outside the nucleus
        return orig(self, input_ids, scores)
    monkeypatch.setattr(vpd.PolicySampler, "__call__", call)
    rows = vpd.sample(model, tok, prompts, n, new_tokens, temperature, top_p, eos, F32, list(range(len(prompts))))
    return rows, torch.stack(got["scores"], 1), torch.stack(got["probs"], 1)


def test_sampling_ignores_shipped_generation_config_logprobs_equal_generate_scores(tiny, monkeypatch):
    base, tok = tiny
    model = _shipped_sampling_settings(base, tok)
    pad, eos = tok.pad_token_id, vpd.stop_ids(model, tok)
    prompts = [vpd.chat_ids(tok, "Q 1 2 ="), vpd.chat_ids(tok, "a longer prompt: Q 3 4 = what now")]
    torch.manual_seed(0)
    rows, scores, _ = _sample_with_scores(model, tok, prompts, 3, 6, 1.0, 1.0, eos, monkeypatch)
    assert model.generation_config.repetition_penalty == 1.1            # the checkpoint's config is left as it was
    comp, mask = plumbing.pad_right([c for c, _, _ in rows], pad, "cpu")
    with torch.no_grad():
        logits = plumbing.completion_logits(model, [p for p in prompts for _ in range(3)], comp, 1.0, pad, F32)
    lp = vpd.token_logprobs(logits, comp)
    sc = scores[:, :comp.shape[1]].log_softmax(-1)
    assert torch.isfinite(sc[mask.bool()]).all()                        # no top-k / top-p / min-p / bad-words cut
    got = sc.gather(-1, comp[..., None])[..., 0]
    assert torch.allclose(got[mask.bool()], lp[mask.bool()], atol=1e-4)
    # the whole processed distribution is the policy's (a repetition penalty would move the repeated tokens)
    assert torch.allclose(sc[mask.bool()], logits.log_softmax(-1)[mask.bool()], atol=1e-4)
    assert sum(len(c) for c, _, _ in rows) > 6


def test_eval_sampling_uses_only_eval_temperature_and_top_p(tiny, monkeypatch):
    base, tok = tiny
    model = _shipped_sampling_settings(base, tok)
    pad, eos = tok.pad_token_id, vpd.stop_ids(model, tok)
    prompts = [vpd.chat_ids(tok, "Q 1 2 =")]
    torch.manual_seed(1)
    rows, scores, probs = _sample_with_scores(model, tok, prompts, 2, 3, 0.6, 0.95, eos, monkeypatch)
    comp, _ = plumbing.pad_right([c for c, _, _ in rows], pad, "cpu")
    with torch.no_grad():
        z = plumbing.completion_logits(model, prompts * 2, comp, 0.6, pad, F32)[:, 0].double()   # first token: logits / 0.6
    for i in range(2):
        assert torch.allclose(scores[i, 0].double() / 0.6, z[i], atol=1e-4)   # the sampler got the raw logits
        p = z[i].softmax(-1)
        order = p.argsort(descending=True)
        keep = int((p[order].cumsum(0) < 0.95).sum()) + 1                # smallest nucleus with mass >= 0.95
        kept = probs[i, 0] > 0
        assert int(kept.sum()) == keep and kept[order[:keep]].all()
        assert torch.allclose(probs[i, 0][kept].double(), p[kept], atol=1e-6)   # softmax(logits / T), nothing else
        assert kept[comp[i, 0]]                                            # the drawn token is inside the nucleus


def test_nucleus_weights_and_inverse_cdf_on_hand_made_cases():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log() + 7.0          # weights relative to the largest
    assert torch.allclose(vpd.nucleus_weights(logits, 1.0, 0.8), torch.tensor([[1.0, 0.6, 0.0, 0.0]]))   # 0.5 + 0.3
    assert torch.allclose(vpd.nucleus_weights(logits, 1.0, 0.81), torch.tensor([[1.0, 0.6, 0.3, 0.0]]))
    assert torch.allclose(vpd.nucleus_weights(torch.tensor([[0.0, 2.0 * math.log(3.0)]]), 2.0, 1.0),
                          torch.tensor([[1 / 3, 1.0]]))                  # softmax([0, log 3]) at temperature 2: 1:3
    p = torch.tensor([[0.125, 0.0, 0.5, 0.375, 0.0]])                     # cdf 0.125, 0.125, 0.625, 1, 1
    u = torch.tensor([0.0, 0.0625, 0.125, 0.6, 0.625, 0.999999, 1.0 - 2 ** -53, 1.0], dtype=torch.float64)
    assert plumbing.inverse_cdf(p.expand(8, -1), u)[:, 0].tolist() == [0, 0, 2, 2, 3, 3, 3, 3]   # never a 0-probability token
    half = torch.tensor([[0.2, 0.0, 0.2, 0.0]])                          # unnormalised: u scales by the total 0.4
    assert plumbing.inverse_cdf(half.expand(3, -1), torch.tensor([0.0, 0.49, 0.5]))[:, 0].tolist() == [0, 0, 2]
    w = torch.zeros(2, 10)                                               # across blocks of 4: 0-3, 4-7, 8-9 (padded)
    w[:, [1, 5, 6, 8]] = torch.tensor([0.25, 0.25, 0.25, 0.25])
    for u, want in [(0.0, 1), (0.2499, 1), (0.25, 5), (0.5, 6), (0.75, 8), (1.0, 8)]:
        assert plumbing.inverse_cdf(w, torch.tensor([u, u], dtype=torch.float64), block=4)[:, 0].tolist() == [want] * 2


def test_policy_sampler_draws_from_the_policy():
    """200,000 draws of PolicySampler from a 5-token distribution: frequencies within 4 standard errors, greedy
    argmax of its scores is the draw, and a token outside the nucleus is never drawn."""
    torch.manual_seed(0)
    want = torch.tensor([0.4, 0.25, 0.2, 0.1, 0.05])
    scores = want.log().expand(200_000, -1).clone()
    out = vpd.PolicySampler(1.0, 1.0, range(200_000))(None, scores)
    assert ((out == 0).sum(1) == 1).all() and torch.isinf(out).sum() == 200_000 * 4
    freq = torch.bincount(out.argmax(1), minlength=5).double() / 200_000
    assert ((freq - want.double()).abs() < 4 * (want * (1 - want) / 200_000).sqrt()).all(), freq
    drawn = vpd.PolicySampler(1.0, 0.6, range(200_000))(None, scores).argmax(1)   # nucleus {0.4, 0.25}
    assert set(drawn.unique().tolist()) == {0, 1}


def test_bf16_generation_copy_follows_the_training_weights_and_samples_the_policy(tiny):
    """--gen-weights bf16: plumbing.refresh gives the copy the training weights cast to bf16. PolicySampler draws exactly
    from the copy's distribution (100,000 draws, frequencies within 4 standard errors). That distribution differs
    from the fp32 model's by bf16 rounding: on the tiny model a mean total variation of 0.03 per position, the same
    order as today's bf16 autocast generation (0.02), so its rollouts are as nearly on-policy as those."""
    model = _perturbed_copy(tiny[0], seed=21, scale=0.2)
    gen = copy.deepcopy(model).to(torch.bfloat16).eval().requires_grad_(False)
    with torch.no_grad():
        next(model.parameters()).add_(0.1)                      # an update the copy has not seen
    plumbing.refresh(gen, model)
    assert all(torch.equal(g, p.to(torch.bfloat16)) for g, p in zip(gen.parameters(), model.parameters()))
    plumbing.refresh(model, model)                                    # generation on the training model: nothing to do
    ids = torch.tensor([vpd.chat_ids(tiny[1], "Q 1 2 = what is it")])
    with torch.no_grad():
        p32 = model(input_ids=ids).logits[0].double().softmax(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            p_auto = model(input_ids=ids).logits[0].double().softmax(-1)
        z16 = gen(input_ids=ids).logits[0]
    assert z16.dtype == torch.bfloat16
    p16 = z16.double().softmax(-1)
    tv16, tv_auto = (0.5 * (p - p32).abs().sum(-1).mean().item() for p in (p16, p_auto))
    assert 0 < tv16 < 0.05 and tv16 < 2 * tv_auto, (tv16, tv_auto)
    n = 100_000
    drawn = vpd.PolicySampler(1.0, 1.0, range(n))(None, z16[-1:].expand(n, -1)).argmax(1)
    freq, want = torch.bincount(drawn, minlength=p16.shape[1]).double() / n, p16[-1]
    big = want > 1e-3                                          # each of these, and the rest together: within 4 SE
    f, w = torch.cat([freq[big], freq[~big].sum()[None]]), torch.cat([want[big], want[~big].sum()[None]])
    assert big.sum() > 20 and ((f - w).abs() <= 4 * (w * (1 - w) / n).sqrt()).all()


def test_a_rollout_depends_on_its_seed_not_on_its_batch(tiny):
    """Row j of prompt i draws from its own stream (seeds[i], j): sampled alone or beside another prompt (as on
    another rank, or in another batch), it is the same completion; another seed gives another one."""
    model, tok = tiny
    eos = vpd.stop_ids(model, tok)
    p1, p2 = vpd.chat_ids(tok, "Q 1 2 ="), vpd.chat_ids(tok, "a longer prompt: Q 3 4 =")
    both = vpd.sample(model, tok, [p1, p2], 3, 12, 1.0, 1.0, eos, F32, [101, 202])
    alone = vpd.sample(model, tok, [p2], 3, 12, 1.0, 1.0, eos, F32, [202])
    assert [r[0] for r in both[3:]] == [r[0] for r in alone]
    assert len({tuple(r[0]) for r in alone}) > 1                          # the 3 rows of a prompt differ
    other = vpd.sample(model, tok, [p2], 3, 12, 1.0, 1.0, eos, F32, [203])
    assert [r[0] for r in other] != [r[0] for r in alone]
    assert vpd.row_seed(1, 2, 3) == vpd.row_seed(1, 2, 3) != vpd.row_seed(1, 3, 2) and 0 <= vpd.row_seed(-5) < 2 ** 63


@pytest.mark.parametrize("n,c,k,want", [(4, 1, 1, 0.25), (4, 1, 4, 1.0), (5, 2, 2, 0.7), (4, 0, 1, 0.0),
                                        (4, 0, 4, 0.0), (4, 4, 1, 1.0), (8, 3, 2, 1 - 10 / 28)])
def test_pass_at_k(n, c, k, want):
    assert vpd.pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


SMALL = ["--model", "tiny", "--task", "toy", "--steps", "2", "--warmup-steps", "2", "--eval-every", "1",
         "--batch-prompts", "4", "--group-size", "4", "--eval-prompts", "8"]


RUNS = {"vpd": ["--algo", "vpd", "--e-every", "1"],
        "vpd-initial": ["--algo", "vpd", "--e-every", "1", "--e-prior", "initial", "--e-optimizer", "adamw"],
        "sdpo-live": ["--algo", "sdpo", "--teacher", "live"],
        "sdpo-ema": ["--algo", "sdpo", "--teacher", "ema"],
        "sdpo-base": ["--algo", "sdpo", "--teacher", "base"],
        "grpo": ["--algo", "grpo"]}


RESUME = ["--model", "tiny", "--task", "toy", "--batch-prompts", "4", "--group-size", "4", "--warmup-steps", "5",
          "--eval-every", "2", "--e-every", "2", "--eval-prompts", "8"]


NONDET = {"time", "step_seconds", "tokens_per_s", "gen_seconds", "E/seconds"}


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dirs = {k: str(root / k) for k in RUNS}
    ra, rb = str(root / "resume-a"), str(root / "resume-b")

    def resume_chain():
        first = _cli(*RESUME, "--steps", "2", "--output-dir", rb)
        return first, _cli("--resume", rb, "--steps", "4")

    jobs = {k: (lambda k=k: _cli(*SMALL, *RUNS[k], "--output-dir", dirs[k])) for k in RUNS}
    jobs["resume-a"] = lambda: _cli(*RESUME, "--steps", "4", "--save-every", "2", "--output-dir", ra)
    jobs["resume-b"] = resume_chain
    res = _parallel(jobs)
    return {"root": root, "dirs": dirs, "res": res, "ra": ra, "rb": rb}


COMMON_KEYS = {"reward", "success_rate", "completion_len", "student_entropy", "grad_norm", "step_seconds",
               "tokens_per_s", "skipped_steps", "truncated_frac", "step", "time", "eval/pass@1"}


E_KEYS = {"E/skipped", "E/lr", "E/rollouts", "E/successes", "E/seconds"}


E_RAN_KEYS = {"E/loss", "E/loss_after", "E/reward_margin", "E/delta", "E/teacher_move", "E/step_scale",
              "E/teacher_student_kl"}


@pytest.mark.parametrize("name", list(RUNS))
def test_cli_run(cli_runs, name):
    res, d = cli_runs["res"][name], cli_runs["dirs"][name]
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    rows = _metrics(d)
    assert [r["step"] for r in rows] == [1, 2]
    step0 = _metrics(d, with_step0=True)[0]                 # the curve's start: eval before any update
    assert step0["step"] == 0 and 0.0 <= step0["eval/pass@1"] <= 1.0 and "reward" not in step0
    algo = RUNS[name][1]
    want = set(COMMON_KEYS)
    if algo != "grpo":
        want |= {"frac_context", "M/loss"}
    if algo == "vpd":
        want |= E_KEYS
    for r in rows:
        assert want <= set(r), want - set(r)
        if algo == "grpo":
            assert "frac_context" not in r and not any(k.startswith("E/") for k in r)
        if algo == "sdpo":
            assert not any(k.startswith("E/") for k in r)
        for k in ("reward", "success_rate", "truncated_frac", "eval/pass@1", "frac_context",
                  "eval/teacher_success"):
            if k in r:
                assert 0.0 <= r[k] <= 1.0, (k, r[k])
        assert 1.0 <= r["completion_len"] <= 4.0            # toy preset: --max-new-tokens 4
        assert r["skipped_steps"] == 0 and r["grad_norm"] >= 0 and r["step_seconds"] > 0
    if algo == "vpd":
        # E-step every step, skipped unless it has both classes; delta = rollout-weighted mean of r~, the earlier
        # E-step's rollouts at weight --e-delta-decay 0.5
        for r in rows:
            assert r["E/rollouts"] == 16                     # toy env feedback on every rollout
            assert r["E/skipped"] == (r["E/successes"] in (0, 16))
            if not r["E/skipped"]:
                assert E_RAN_KEYS <= set(r) and r["E/teacher_move"] <= 2 * 0.01 and r["E/loss_after"] <= r["E/loss"]
        if not rows[0]["E/skipped"] and not rows[1]["E/skipped"]:
            m1, m2 = rows[0]["E/reward_mean"], rows[1]["E/reward_mean"]
            assert rows[0]["E/delta"] == pytest.approx(m1, abs=1e-9)
            assert rows[1]["E/delta"] == pytest.approx((0.5 * m1 + m2) / 1.5, abs=1e-9)
    with open(os.path.join(d, "samples.jsonl")) as f:
        samples = [json.loads(line) for line in f]
    assert samples and {"prompt", "completion", "feedback", "teacher_prompt"} <= set(samples[0])
    if algo != "grpo":
        assert "Correctly solve the original question." in samples[0]["teacher_prompt"]
    ck = os.path.join(d, "ckpt")
    files = set(os.listdir(ck))
    assert {"config.json", "trainer_state.pt", "tokenizer_config.json"} <= files
    assert any(f.endswith(".safetensors") for f in files)
    assert "tokenizer.json" in files
    extra = {"vpd-initial": "prior", "sdpo-ema": "teacher", "sdpo-base": "teacher"}.get(name)
    for sub in ("prior", "teacher"):
        assert os.path.isdir(os.path.join(ck, sub)) == (sub == extra), sub
    if extra:
        assert any(f.endswith(".safetensors") for f in os.listdir(os.path.join(ck, extra)))
    st = torch.load(os.path.join(ck, "trainer_state.pt"), weights_only=False)
    assert st["state"]["step"] == 2 and st["config"]["algo"] == algo
    # 2 M-steps in the M-step's AdamW; the E-steps that ran (--e-every 1) in the E-step's own AdamW (vpd-initial:
    # --e-optimizer adamw), in the M-step's with the default shared optimizer
    e_ran = sum(not r["E/skipped"] for r in rows) if algo == "vpd" else 0
    own = name == "vpd-initial"
    assert {s["step"].item() for s in st["optimizer"]["state"].values()} == {2.0 + (0 if own else e_ran)}
    if own:
        assert {s["step"].item() for s in st["e_optimizer"]["state"].values()} <= {float(e_ran)}
    else:
        assert st["e_optimizer"] is None


def _same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def test_cli_resume_matches_uninterrupted_run(cli_runs):
    res_a = cli_runs["res"]["resume-a"]
    first, second = cli_runs["res"]["resume-b"]
    for r in (res_a, first, second):
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = _metrics(cli_runs["ra"]), _metrics(cli_runs["rb"])
    assert [r["step"] for r in a] == [1, 2, 3, 4]
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    assert "E/skipped" in a[3] and "eval/pass@1" in a[3]
    for ra, rb in zip(a, b):
        assert set(ra) == set(rb)
        diff = {k: (ra[k], rb[k]) for k in ra if k not in NONDET and not _same(ra[k], rb[k])}
        assert not diff, f"step {ra['step']}: {diff}"


def test_resume_without_steps_keeps_saved_steps(cli_runs, tmp_path, monkeypatch):
    d = str(tmp_path / "run")
    shutil.copytree(cli_runs["dirs"]["sdpo-live"], d)     # a finished 2-step run

    def no_more_steps(*a, **k):
        raise AssertionError("resume trained past the saved --steps")
    monkeypatch.setattr(vpd, "collect_rollouts", no_more_steps)
    cfg, _ = vpd.parse_args(["--resume", d])
    with torch.random.fork_rng():
        vpd.train(cfg)
    assert len(_metrics(d)) == 2


def test_cli_plot(cli_runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    d = cli_runs["dirs"]
    res = _cli("--plot", d["vpd"], d["sdpo-ema"], d["grpo"], "--out", out)
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


BAD = {"unknown-task": ["--task", "nope"],
       "unknown-model": ["--model", "NoSuchModel", "--task", "toy"],
       "unknown-dataset": ["--task", "code", "--dataset", "nope"],
       "group-size-1": ["--task", "toy", "--group-size", "1"],
       "topk-over-vocab": ["--task", "toy", "--topk", "100000"],
       "negative-lr": ["--task", "toy", "--lr", "-1"],
       "resume-missing": ["--resume", "/nonexistent"],
       "alpha-2": ["--task", "toy", "--alpha", "2"],
       "eval-top-p-0": ["--task", "toy", "--eval-top-p", "0"],
       "bad-feedback": ["--task", "toy", "--feedback", "env,bogus"],
       "bad-algo": ["--algo", "foo"],
       "logit-chunk-0": ["--task", "toy", "--logit-chunk", "0"],
       "plot-missing": ["--plot", "/nonexistent"],
       "qa-without-dataset": ["--task", "qa"],
       "qa-missing-file": ["--task", "qa", "--dataset", "qa:/nonexistent/qa.jsonl"],
       "task-file-missing": ["--task", "/nonexistent/my_task.py:MyTask"]}


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    jobs = {k: (lambda k=k: (_cli(*v, "--output-dir", root / k, "--steps", "1"), root / k)) for k, v in BAD.items()}
    return _parallel(jobs)


@pytest.mark.parametrize("name", list(BAD))
def test_cli_bad_input(bad_runs, name):
    res, out_dir = bad_runs[name]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr + res.stdout
    lines = res.stderr.strip("\n").split("\n")
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error:")
    assert not os.path.exists(out_dir)        # nothing written for a refused run


@pytest.mark.parametrize("argv,msg", [(["--task", "toy", "--teacher", "ema"], r"--teacher is for --algo sdpo only"),
                                      (["--algo", "grpo", "--teacher", "live"], r"--teacher is for --algo sdpo only"),
                                      (["--group-size", "1"], "--group-size must be >= 2, got 1"),
                                      (["--e-delta-decay", "1.5"], r"--e-delta-decay must be in \[0, 1\], got 1.5"),
                                      (["--dtype", "float16"], "invalid choice: 'float16'")])
def test_parse_args_refuses(argv, msg):
    with pytest.raises(vpd.UserError, match=msg):
        vpd.parse_args(argv)
    assert vpd.parse_args(["--algo", "sdpo", "--teacher", "live"])[0].teacher == "live"


def test_code_task_refuses_weak_sandbox_unless_unsafe_sandbox(tmp_path, monkeypatch):
    """Where namespaces do not work the code task stops with one line naming --unsafe-sandbox; with the flag it runs
    (weakly isolated, with a warning). VPD_SANDBOX_NO_NAMESPACES=1 simulates such a machine."""
    monkeypatch.setenv("VPD_SANDBOX_NO_NAMESPACES", "1")
    base = ("--task", "code", "--model", "tiny", "--steps", 0)
    refused = _cli(*base, "--output-dir", tmp_path / "a")
    assert refused.returncode == 2, refused.stderr[-2000:]
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("error: sandbox: untrusted code cannot be isolated here") and "--unsafe-sandbox" in line
    allowed = _cli(*base, "--unsafe-sandbox", "--output-dir", tmp_path / "b")
    assert "cannot be isolated" not in allowed.stderr                  # the flag got past the refusal
    if allowed.returncode == 2:     # weak mode as root runs the program as another uid: a python under /root fails
        (line,) = allowed.stderr.strip().splitlines()[-1:]
        assert "even a trivial program does not run here" in line and "Permission denied" in line, line
    else:
        assert allowed.returncode == 0, allowed.stderr[-2000:]
        assert "warning: sandbox without namespaces" in allowed.stderr


def test_qa_task_end_to_end_rewards_match_the_data(tmp_path):
    import tasks
    rows = [{"question": f"What is {i} plus {i}?", "answer": 2 * i, "explanation": f"{i} + {i} = {2 * i}."}
            for i in range(12)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = tmp_path / "run"
    with torch.random.fork_rng():
        rc = vpd.main(["--model", "tiny", "--task", "qa", "--dataset", f"qa:{path}", "--steps", "2", "--e-every", "1",
                       "--warmup-steps", "2", "--batch-prompts", "2", "--group-size", "3", "--max-new-tokens", "6",
                       "--eval-every", "2", "--eval-prompts", "2", "--eval-samples", "1", "--log-samples", "100",
                       "--output-dir", str(d)])
    assert rc == 0
    task = tasks.get_task("qa", f"qa:{path}")
    by_q = {r["question"]: r for r in task.read(str(path))}
    samples = [json.loads(line) for line in open(d / "samples.jsonl")]
    assert len(samples) == 2 * 6                                  # every rollout of both steps is logged
    for s in samples:
        (q,) = [q for q in by_q if f"{q}\n\nReply with the answer only." in s["prompt"]]
        score = task.score(by_q[q], s["completion"])             # the logged reward is this row's score
        assert (s["reward"], s["feedback"]) == (score.reward, score.feedback)
        if s["reward"] == 0.0:
            assert f"The correct answer is {by_q[q]['answer']}. {by_q[q]['explanation']}" in s["feedback"]
            assert s["feedback"] in s["teacher_prompt"] and s["teacher_prompt"].startswith(q)
    metrics = _metrics(d)
    for m in metrics:
        mine = [s["reward"] for s in samples if s["step"] == m["step"]]
        assert m["reward"] == pytest.approx(sum(mine) / len(mine), abs=1e-12)
    assert json.load(open(d / "config.json"))["max_new_tokens"] == 6 and "E/skipped" in metrics[-1]


def test_task_from_file_end_to_end(tmp_path, monkeypatch):
    (tmp_path / "my_task.py").write_text(
        "from tasks import Score, Task\n\n\n"
        "class AlwaysRight(Task):\n"
        "    def load(self, split):\n"
        "        return [{'q': f'item {i}'} for i in range(6)]\n\n"
        "    def prompt(self, ex):\n"
        "        return ex['q']\n\n"
        "    def score(self, ex, completion):\n"
        "        return Score(1.0, '')\n")
    monkeypatch.chdir(tmp_path)
    with torch.random.fork_rng():
        rc = vpd.main(["--model", "tiny", "--task", "my_task.py:AlwaysRight", "--algo", "sdpo", "--teacher", "live",
                       "--steps", "2", "--batch-prompts", "2", "--group-size", "2", "--max-new-tokens", "3",
                       "--eval-every", "1", "--eval-prompts", "2", "--eval-samples", "1"])
    assert rc == 0
    (run,) = os.listdir(tmp_path / "runs")
    assert run.startswith("my_task.py_AlwaysRight-sdpo-")
    metrics = _metrics(tmp_path / "runs" / run)
    assert [(m["reward"], m["success_rate"], m["frac_context"], m["eval/pass@1"]) for m in metrics] == \
        [(1.0, 1.0, 1.0, 1.0)] * 2                                # every rollout scored by the file's task
    assert vpd.main(["--task", "my_task.py:Missing", "--model", "tiny"]) == 2


# ================================================================================================================
# §7 Baselines: GRPO's group advantages, SDPO's EMA teacher
# ================================================================================================================
def test_group_advantages_hand_case():
    r = t64([1.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 0.0, 0.0])
    a = vpd.group_advantages(r, 4, False)
    want = [0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0, 0.5, 0.5, -0.5, -0.5]
    assert a.tolist() == pytest.approx(want, abs=1e-12)
    a = vpd.group_advantages(r, 4, True)
    sd1 = math.sqrt((0.75 ** 2 + 3 * 0.25 ** 2) / 3)     # unbiased (n - 1)
    sd3 = math.sqrt(4 * 0.25 / 3)
    want = [0.75 / sd1, -0.25 / sd1, -0.25 / sd1, -0.25 / sd1, 0, 0, 0, 0,
            0.5 / sd3, 0.5 / sd3, -0.5 / sd3, -0.5 / sd3]
    assert a.tolist() == pytest.approx(want, abs=1e-5)
    assert a[4:8].abs().max().item() == 0.0
    assert not torch.isnan(a).any()


def _grpo_manual(model, rows, adv, pad):
    total = sum(len(r.completion_ids) for r in rows)
    loss, ent, ntok = 0.0, 0.0, 0
    for r, a in zip(rows, adv):
        comp = torch.tensor([r.completion_ids])
        logits = plumbing.completion_logits(model, [r.prompt_ids], comp, 1.0, pad, F32)[0]
        loss = loss - a * vpd.token_logprobs(logits, comp[0]).sum() / total
        with torch.no_grad():
            p = logits.double().softmax(-1)
            ent += -(p * p.log()).sum().item()
        ntok += len(r.completion_ids)
    return loss, ent / ntok


def test_grpo_step_loss_and_gradients(tiny):
    base, tok = tiny
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)[:4]
    for r, rew in zip(rows, [1.0, 0.0, 0.5, 0.5]):      # group 1: +-1/sqrt(0.5)...; group 2: all equal -> A = 0
        r.reward = rew
    cfg = vpd.Config(model="tiny", group_size=2, grpo_std=False, micro_batch=3, temperature=1.0)
    model = copy.deepcopy(base)
    model.zero_grad(set_to_none=True)
    out = vpd.grpo_step(model, rows, cfg, pad, F32)
    ref = copy.deepcopy(base)
    ref.zero_grad(set_to_none=True)
    loss, _ = _grpo_manual(ref, rows, [0.5, -0.5, 0.0, 0.0], pad)
    assert out["G/loss"] == pytest.approx(loss.item(), abs=1e-6)
    loss.backward()
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-6, rtol=1e-4), n


def test_grpo_entropy_logged_when_all_advantages_zero(tiny):
    base, tok = tiny
    pad = tok.pad_token_id
    rows = _rows(tok, tok.eos_token_id)[:4]
    for r in rows:
        r.reward = 0.0
    cfg = vpd.Config(model="tiny", group_size=2, micro_batch=4, temperature=1.0)
    model = copy.deepcopy(base)
    out = vpd.grpo_step(model, rows, cfg, pad, F32)
    with torch.no_grad():
        _, want = _grpo_manual(model, rows, [0.0] * 4, pad)
    assert out["G/loss"] == 0.0
    assert math.isfinite(out["student_entropy"])
    assert out["student_entropy"] == pytest.approx(want, rel=1e-4)


def test_ema_update_direction():
    torch.manual_seed(0)
    teacher, student = torch.nn.Linear(3, 2).double(), torch.nn.Linear(3, 2).double()
    old_t = [p.detach().clone() for p in teacher.parameters()]
    old_s = [p.detach().clone() for p in student.parameters()]
    vpd.ema_update(teacher, student, 0.05)
    for p, o, s in zip(teacher.parameters(), old_t, old_s):
        assert torch.allclose(p, 0.95 * o + 0.05 * s, atol=1e-14)
        assert not torch.allclose(p, 0.05 * o + 0.95 * s, atol=1e-6)
    for p, s in zip(student.parameters(), old_s):
        assert torch.equal(p, s)


# ================================================================================================================
# §10 The toy, and its preset
# ================================================================================================================
def test_vpd_student_learns_the_toy_from_feedback(tmp_path):
    """From a model that can read feedback (the toy warm-up) VPD's student goes from chance to a clearly better
    held-out pass@1, while its teacher keeps reading the feedback. Fails when the M-step or the E-step is off or
    has its sign flipped (checked by hand: see the README)."""
    d = str(tmp_path / "vpd")
    res = _cli("--task", "toy", "--steps", 120, "--eval-every", 120, "--batch-prompts", 8, "--warmup-steps", 150,
               "--output-dir", d, timeout=600, threads=2)      # runs alone: both cores (~55 s on 2 cores)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = _metrics(d, with_step0=True)
    start, end = rows[0], rows[-1]
    assert start["step"] == 0 and end["step"] == 120
    assert start["eval/pass@1"] <= 0.3                       # chance is 0.1
    assert end["eval/pass@1"] >= start["eval/pass@1"] + 0.3, (start["eval/pass@1"], end["eval/pass@1"])
    assert end["eval/teacher_success"] >= 0.8                # the teacher still reads its feedback


def test_toy_preset_trains_the_e_step_on_the_last_batch():
    cfg, _ = vpd.parse_args(["--task", "toy"])
    assert cfg.e_buffer == "last"
    assert vpd.parse_args(["--task", "toy", "--e-buffer", "all"])[0].e_buffer == "all"   # the flag wins
    assert vpd.parse_args(["--task", "code"])[0].e_buffer == "all"


# ================================================================================================================
# The docs: every function they name exists, every § and pitfall they cite resolves
# ================================================================================================================
def _code_names(path: str) -> list[str]:
    """Backticked identifiers in the code column (the last one, headed vpd.py / code / function) of a doc's tables;
    parenthesised remarks such as `train` (`prior`) are left out."""
    import re
    names, in_table = [], False
    lines = open(os.path.join(REPO, path), encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        cells = re.split(r"(?<!\\)\|", line.strip())
        if i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            in_table = len(cells) > 2 and re.match(r"(code|function|vpd\.py)", cells[-2].strip()) is not None
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            names += re.findall(r"`([A-Za-z_][\w.]*)`", re.sub(r"\([^)]*\)", "", cells[-2]))
    return names


def test_every_function_the_docs_name_exists():
    """The README's paper-to-code map and docs/algorithm.md's tables name functions: each must exist (in vpd,
    or by its module: tasks.Task.score, vpd.chat_ids)."""
    import importlib
    import tasks
    names = _code_names("README.md") + _code_names("docs/algorithm.md")
    assert len(names) >= 30 and {"m_step", "e_step", "bco_loss", "kl_k3"} <= set(names)   # the tables were read
    for name in names:
        head, *rest = name.split(".")
        if head in ("vpd", "tasks", "plumbing", "sandbox"):
            obj, rest = importlib.import_module(head), rest
        else:
            obj = getattr(vpd, head, None) or getattr(tasks, head, None)
        for part in rest:
            obj = getattr(obj, part, None)
        assert callable(obj), f"{name} is named in the docs but is not a function or class of the code"


def test_every_section_and_pitfall_reference_resolves():
    import glob
    import re
    here = os.path.dirname(os.path.abspath(__file__))
    doc = open(os.path.join(here, "docs", "algorithm.md"), encoding="utf-8").read()
    sections = set(re.findall(r"^## §(\d+) ", doc, re.M))
    pitfalls_text = doc.split("## §9 ", 1)[1].split("\n## ", 1)[0]
    pitfalls = set(re.findall(r"^(\d+)\. \*\*", pitfalls_text, re.M))
    assert sections == {str(i) for i in range(1, 11)} and pitfalls == {str(i) for i in range(1, 10)}
    files = [os.path.join(here, f) for f in ("README.md", "docs/algorithm.md")] + glob.glob(os.path.join(here, "*.py"))
    cited = 0
    for path in files:
        text = open(path, encoding="utf-8").read()
        for n in re.findall(r"§(\d+)", text):
            assert n in sections, f"{os.path.basename(path)} cites §{n}, which docs/algorithm.md does not have"
            cited += 1
        for group in re.findall(r"pitfalls? (\d+(?:(?:, | and )\d+)*)", text):
            for n in re.findall(r"\d+", group):
                assert n in pitfalls, f"{os.path.basename(path)} cites pitfall {n}, not in docs/algorithm.md §9"
                cited += 1
    assert cited > 50
