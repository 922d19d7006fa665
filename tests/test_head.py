import torch

from nnunetv2_morse.encoding import FourierPositionalEncoding
from nnunetv2_morse.head import PointHead, point_labels, rendering_loss
from nnunetv2_morse.points import voxel_centres


def test_head_shapes_and_coarse_reconcatenation():
    head = PointHead(feature_channels=6, num_classes=3, hidden=(16, 16, 16))
    assert [layer.in_features for layer in head.layers] == [9, 19, 19] and head.predictor.in_features == 19
    out = head(torch.randn(2, 50, 6), torch.randn(2, 50, 3), torch.rand(2, 50, 2))
    assert out.shape == (2, 50, 3)


def test_iar_head_uses_position():
    torch.manual_seed(0)
    head = PointHead(6, 3, (16,), FourierPositionalEncoding(3, 8, 1.0))
    assert head.layers[0].in_features == 6 + 16 + 3
    feats, coarse = torch.randn(1, 1, 6).expand(1, 4, 6), torch.randn(1, 1, 3).expand(1, 4, 3)
    out = head(feats, coarse, torch.rand(1, 4, 3))
    assert not torch.allclose(out[:, 0], out[:, 1])  # same features, different positions


def test_point_labels_are_nearest_voxel():
    target = torch.randint(0, 4, (2, 1, 5, 6, 7))
    flat = torch.randint(0, 210, (2, 30))
    coords = voxel_centres(flat, (5, 6, 7)) + (torch.rand(2, 30, 3) - 0.5) * 0.9 / torch.tensor([5, 6, 7])
    assert torch.equal(point_labels(target, coords), target.flatten(1).gather(1, flat))


def test_rendering_loss_ignores_ignore_label_and_is_finite_on_background():
    logits = torch.randn(1, 3, 4, requires_grad=True)
    coords = voxel_centres(torch.tensor([[0, 1, 2, 3]]), (2, 2))
    target = torch.tensor([[[[0, 1], [5, 5]]]])
    loss = rendering_loss(logits, coords, target, ignore_label=5)
    expected = torch.nn.functional.cross_entropy(logits[..., :2], torch.tensor([[0, 1]]))
    torch.testing.assert_close(loss, expected)
    only_ignored = rendering_loss(logits, coords, torch.full((1, 1, 2, 2), 5), ignore_label=5)
    assert only_ignored.item() == 0.0
    only_ignored.backward()
    background = rendering_loss(logits, coords, torch.zeros(1, 1, 2, 2, dtype=torch.long))
    assert torch.isfinite(background)
