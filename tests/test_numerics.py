"""Numerics under reduced precision and degenerate batches."""
import pytest
import torch

from nnunetv2_morse.encoding import FourierPositionalEncoding
from nnunetv2_morse.experts import PointMixtureOfExperts, draw_kept_experts
from nnunetv2_morse.head import PointHead, rendering_loss
from plans import SmallMORSE, build


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_encoding_and_head_stay_finite_under_autocast(dtype):
    torch.manual_seed(0)
    encoding = FourierPositionalEncoding(3, num_frequencies=64, std=5000.0)  # phases up to ~1e5 rad
    head = PointHead(32, 4, (64, 64, 64), encoding)
    coords = torch.cat((torch.rand(1, 500, 3), torch.ones(1, 10, 3), torch.zeros(1, 10, 3)), dim=1)
    features, coarse = torch.randn(1, 520, 32) * 100, torch.randn(1, 520, 4) * 50
    with torch.autocast("cpu", dtype=dtype):
        psi = encoding(coords)
        out = head(features, coarse, coords)
    assert psi.dtype == torch.float32 and torch.isfinite(psi).all()
    assert torch.isfinite(out).all()
    exact = encoding(coords.double().float())
    torch.testing.assert_close(psi, exact)


def test_network_training_step_is_finite_under_autocast():
    torch.manual_seed(0)
    net = build(SmallMORSE, 2, True).train()
    x = torch.randn(2, 1, 32, 32) * 10
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x, torch.tensor(0.05))
        loss = rendering_loss(out.point_logits, out.point_coords, torch.zeros(2, 1, 32, 32))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_all_experts_dropped_keeps_one_and_stays_finite():
    torch.manual_seed(0)
    kept = draw_kept_experts(10_000, 3, 0.999, torch.device("cpu"))
    assert (kept.sum(1) == 1).all()
    counts = kept.sum(0).float() / 10_000
    assert torch.allclose(counts, torch.full((3,), 1 / 3), atol=0.03)  # the rescued expert is uniform
    moe = PointMixtureOfExperts((4, 4, 4), 8, (8,), (8,), (8,), drop_prob=0.999).train()
    out = moe([torch.randn(5, 6, 4) for _ in range(3)])
    assert torch.isfinite(out).all()


def test_all_background_batch_gives_a_finite_loss():
    torch.manual_seed(0)
    net = build(SmallMORSE, 3, True).train()
    out = net(torch.randn(1, 1, 32, 32, 32))
    loss = rendering_loss(out.point_logits, out.point_coords, torch.zeros(1, 1, 32, 32, 32))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
