import pytest
import torch

from nnunetv2_morse.experts import (DenseMixtureOfExperts, PointMixtureOfExperts, PointMultiscaleFeatures,
                                    draw_kept_experts)


def make_moe(drop_prob=0.7, channels=(8, 16, 32)):
    return PointMixtureOfExperts(channels, feature_channels=12, expert_hidden=(10, 10), gate_hidden=(9, 9, 9),
                                 fusion_hidden=(11,), drop_prob=drop_prob)


def stage_features(channels=(8, 16, 32), batch=3, points=7):
    return [torch.randn(batch, points, c) for c in channels]


def test_gate_weights_sum_to_one_and_respect_the_mask():
    moe = make_moe()
    feats = torch.randn(4, 20, 3, 12)
    kept = torch.tensor([[True, True, True], [True, False, False], [False, True, True], [False, False, True]])
    w = moe.gate_weights(feats, kept)
    assert w.shape == (4, 20, 3)
    torch.testing.assert_close(w.sum(-1), torch.ones(4, 20))
    assert (w.transpose(1, 2)[~kept] == 0).all()
    assert torch.equal(w[1, :, 0], torch.ones(20)) and torch.equal(w[3, :, 2], torch.ones(20))
    torch.testing.assert_close(moe.gate_weights(feats, None).sum(-1), torch.ones(4, 20))
    # the gate of a sample does not see its dropped experts' features
    changed = feats.clone()
    changed[1, :, 1:] += 100
    torch.testing.assert_close(moe.gate_weights(changed, kept)[1], w[1])


def test_dropped_expert_frequency():
    torch.manual_seed(0)
    alpha, n, draws = 0.7, 5, 200_000
    kept = draw_kept_experts(draws, n, alpha, torch.device("cpu"))
    dropped = (~kept).float().mean().item()
    assert dropped == pytest.approx(alpha - alpha ** n / n, abs=0.003)  # 0.6664: the rescue rule's only effect
    assert kept.any(1).all()
    # exactly one expert is kept in the rescued samples, uniformly chosen
    counts = kept.sum(1)
    assert (counts == 1).float().mean().item() == pytest.approx(n * (1 - alpha) * alpha ** (n - 1) + alpha ** n, abs=0.004)
    # independent Bernoulli per expert: both of two dropped with alpha^2, less the rescues of either of them
    both = ((~kept[:, 0]) & (~kept[:, 1])).float().mean().item()
    assert both == pytest.approx(alpha ** 2 - 2 * alpha ** n / n, abs=0.004)


def test_stochastic_only_in_training():
    torch.manual_seed(0)
    moe = make_moe(drop_prob=0.7)
    feats = stage_features()
    moe.train()
    a, b = moe(feats), moe(feats)
    assert not torch.allclose(a, b)
    moe.eval()
    torch.testing.assert_close(moe(feats), moe(feats))
    dense = make_moe(drop_prob=0.0)
    dense.load_state_dict(moe.state_dict())
    dense.eval()
    torch.testing.assert_close(dense(feats), moe(feats))
    dense.train()
    torch.testing.assert_close(dense(feats), moe.eval()(feats))


def test_every_expert_gets_a_gradient_even_when_dropped():
    torch.manual_seed(0)
    moe = make_moe(drop_prob=0.7).train()
    moe(stage_features()).sum().backward()
    for expert in moe.experts:
        assert all(p.grad is not None for p in expert.parameters())


def test_shapes():
    moe = make_moe()
    assert moe(stage_features()).shape == (3, 7, 12)
    ms = PointMultiscaleFeatures((8, 16, 32))
    assert ms(stage_features()).shape == (3, 7, 56) and ms.out_channels == 56


def test_dense_mixture_of_experts():
    torch.manual_seed(0)
    dense = DenseMixtureOfExperts((8, 16), 12, (10,), (9, 9), (11,), drop_prob=0.5)
    stages = [torch.randn(2, 8, 16, 16), torch.randn(2, 16, 8, 8)]
    assert dense.gate[0].kernel_size == (3, 3)
    assert dense.eval()(stages, (16, 16)).shape == (2, 12, 16, 16)
    maps = torch.randn(2, 2, 12, 16, 16)
    kept = torch.tensor([[True, False], [True, True]])
    weights = dense.gate_weights(maps, kept)
    torch.testing.assert_close(weights.sum(1), torch.ones(2, 16, 16))
    assert (weights[0, 1] == 0).all()
    dense.train()
    assert not torch.allclose(dense(stages, (16, 16)), dense(stages, (16, 16)))
