"""The plumbing (plumbing.py): the chunked forward passes, the check that logits are the LM head's, devices and
dtypes, checkpoints from older versions."""
import copy
import math

import pytest
import torch

import plumbing
import vpd


D = torch.float64
F32 = torch.float32


def t64(x):
    return torch.tensor(x, dtype=D)


def test_position_chunks_exact_slices():
    mb_for = lambda step, rows, vocab: step * 4 * vocab * rows / 2 ** 20   # noqa: E731  (chunk_mb giving `step`)
    assert plumbing.position_chunks(4, 10, 1024, mb_for(3, 4, 1024)) == [slice(0, 3), slice(3, 6), slice(6, 9),
                                                                     slice(9, 10)]
    assert plumbing.position_chunks(2, 3, 1024, 1e-9) == [slice(0, 1), slice(1, 2), slice(2, 3)]   # >= 1 position
    assert plumbing.position_chunks(2, 5, 1024, 100.0) == [slice(0, 5)]
    # the default: 41 tokens of a 151,936 vocabulary = 10 positions of 4 rows
    assert plumbing.position_chunks(4, 25, 151936, vpd.Config.logit_chunk)[0] == slice(0, 10)


def _head_and_backbone(seed=0, n=3, T=7, H=5, V=11):
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(H, V, bias=False).double()
    body = torch.nn.Linear(H, H).double()
    with torch.no_grad():
        head.weight.copy_(torch.randn(V, H, generator=g, dtype=D))
    x = torch.randn(n, T, H, generator=g, dtype=D)
    y = torch.randint(0, V, (n, T), generator=g)
    return head, body, x, y


def test_backward_by_chunks_equals_one_backward_hand_made():
    """sum over chunks, each backpropagated at once into the head and a detached h, then dL/dh through the backbone:
    the same loss and gradients as one backward of the whole [n, T, V] loss."""
    head, body, x, y = _head_and_backbone()
    w = torch.linspace(-1, 1, x.shape[1], dtype=D)
    loss_fn = lambda h, c: -(vpd.token_logprobs(head(h), y[:, c]) * w[c]).sum()   # noqa: E731

    body.zero_grad(), head.zero_grad()
    want = loss_fn(body(x), slice(None))
    want.backward()
    ref = [p.grad.clone() for p in (*body.parameters(), *head.parameters())]
    body.zero_grad(), head.zero_grad()
    sums = {"loss": 0.0, "nonfinite": 0}
    chunks = [slice(0, 3), slice(3, 4), slice(4, 7)]
    got = plumbing.backward_by_chunks(body(x), loss_fn, chunks, sums)
    assert got.item() == pytest.approx(want.item(), rel=1e-12) and sums["loss"] == pytest.approx(want.item())
    for a, b in zip(ref, (p.grad for p in (*body.parameters(), *head.parameters()))):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    # a NaN chunk: counted, the backbone gets no gradient
    body.zero_grad(), head.zero_grad()
    nan_fn = lambda h, c: loss_fn(h, c) * (float("nan") if c.start == 3 else 1.0)   # noqa: E731
    assert math.isnan(plumbing.backward_by_chunks(body(x), nan_fn, chunks, sums).item())
    assert sums["nonfinite"] == 1 and all(p.grad is None or not p.grad.any() for p in body.parameters())


def test_check_head_refuses_logits_that_are_not_the_head_of_the_last_hidden_state(tiny):
    base, _ = tiny
    plumbing.check_head(base, F32)                                  # Qwen2: logits = lm_head(norm(last hidden state))
    model = copy.deepcopy(base)
    forward = model.forward
    model.forward = lambda **kw: type("Out", (), {"logits": 2 * forward(**kw).logits})()   # a logit scale
    with pytest.raises(vpd.UserError, match="not supported by the chunked losses"):
        plumbing.check_head(model, F32)


def test_static_cache_needs_float32(tmp_path):
    """A static KV cache holds one dtype; under bf16 autocast RoPE makes fp32 keys and bf16 values (found on an
    H100: index_copy_ dtype error), so --gen-cache static is refused unless --dtype float32."""
    cfg = vpd.Config(model="tiny", task="toy", gen_cache="static", dtype="bfloat16", device="cpu", steps=1,
                     output_dir=str(tmp_path / "r"))
    with pytest.raises(vpd.UserError, match="--gen-cache static needs --dtype float32 or --gen-weights bf16"):
        vpd.train(cfg)


def test_checkpoint_from_before_the_estate_object_loads(tmp_path):
    """A trainer_state.pt that kept beta, delta and delta_count loose (before vpd.EState), or an EState with one
    weight per E-step (ratio_mean, count), loads as today's EState: delta_sum = delta x count, delta_n = count;
    lr = --e-lr or else --lr of the saved config; the removed KL-controller settings are dropped, and a removed
    E-step optimizer (sign, m-precond) becomes the shared AdamW."""
    (tmp_path / "ckpt").mkdir()
    old = {"step": 3, "beta": 0.25, "delta": 0.5, "delta_count": 2, "skipped": 0}
    for e_lr, want_lr in ((None, 1e-4), (3e-5, 3e-5)):
        torch.save({"state": dict(old), "config": {"lr": 1e-4, "e_lr": e_lr}}, tmp_path / "ckpt" / "trainer_state.pt")
        ckpt, saved = plumbing.load_checkpoint(str(tmp_path))
        assert ckpt == str(tmp_path / "ckpt")
        assert vpd.EState(**saved["state"]["e"]) == vpd.EState(lr=want_lr, delta_sum=1.0, delta_n=2)
    mid = {"step": 3, "skipped": 0, "e": {"beta": 0.5, "lr": 1e-5, "ratio_mean": -2.0, "count": 3}}
    torch.save({"state": mid, "config": {"lr": 1e-4, "e_target_kl": 0.1, "e_adapt": "lr", "e_optimizer": "sign"}},
               tmp_path / "ckpt" / "trainer_state.pt")
    _, saved = plumbing.load_checkpoint(str(tmp_path))
    assert vpd.EState(**saved["state"]["e"]) == vpd.EState(lr=1e-5, delta_sum=-3.0, delta_n=3)
    assert saved["config"] == {"lr": 1e-4, "e_optimizer": "shared"}      # the stateless optimizers are gone
