import pytest
import torch

from nnunetv2_morse.encoding import FourierPositionalEncoding
from nnunetv2_morse.head import PointHead, point_labels, rendering_loss
from nnunetv2_morse.points import voxel_centres


def test_head_shapes_and_coarse_reconcatenation():
    head = PointHead(feature_channels=6, num_classes=3, hidden=(16, 16, 16))
    assert [layer.in_features for layer in head.layers] == [9, 19, 19] and head.predictor.in_features == 19
    out = head(torch.randn(2, 50, 6), torch.randn(2, 50, 3), torch.rand(2, 50, 2))
    assert out.shape == (2, 50, 3)


def concatenating_forward(head, features, coarse, coords):
    """PointHead's forward as the layers' concatenated inputs define it: [psi, features], then [x, coarse] each layer."""
    x = torch.cat((head.positional_encoding(coords), features), dim=-1) if head.positional_encoding else features
    for layer in head.layers:
        x = torch.relu(layer(torch.cat((x, coarse), dim=-1)))
    return head.predictor(torch.cat((x, coarse), dim=-1))


@pytest.mark.parametrize("encoding", [None, 16])
def test_split_weight_forward_equals_the_concatenating_one(encoding):
    torch.manual_seed(0)
    head = PointHead(24, 5, (32, 32, 32), FourierPositionalEncoding(2, encoding) if encoding else None).double()
    # the state dict keeps one weight per layer over the concatenated input: checkpoints stay loadable
    assert [k for k in head.state_dict() if k.startswith(("layers", "predictor"))] == \
        [f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")] + ["predictor.weight", "predictor.bias"]
    inputs = [torch.randn(2, 50, 24, dtype=torch.double, requires_grad=True),
              torch.randn(2, 50, 5, dtype=torch.double, requires_grad=True), torch.rand(2, 50, 2, dtype=torch.double)]
    split, reference = head(*inputs), concatenating_forward(head, *inputs)
    torch.testing.assert_close(split, reference, rtol=0, atol=1e-6)
    weights = torch.randn_like(split)
    grads = torch.autograd.grad((split * weights).sum(), [*head.parameters(), *inputs[:2]])
    expected = torch.autograd.grad((reference * weights).sum(), [*head.parameters(), *inputs[:2]])
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_linear_of_parts_is_the_linear_layer_of_the_concatenation():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3 + 4 + 1, 6)
    parts = [torch.randn(2, 7, 3), torch.randn(2, 7, 4), torch.randn(2, 7, 1)]
    torch.testing.assert_close(PointHead.linear_of_parts(layer, parts), layer(torch.cat(parts, dim=-1)))


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


def test_region_loss_is_binary_cross_entropy_and_respects_the_ignore_channel():
    from nnunetv2_morse.head import selectable_voxels
    logits = torch.randn(1, 2, 4)
    coords = voxel_centres(torch.tensor([[0, 1, 2, 3]]), (2, 2))
    regions = torch.tensor([[[[1, 0], [1, 1]], [[0, 0], [1, 0]]]], dtype=torch.float)  # (1, R=2, 2, 2)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, regions.flatten(2))
    torch.testing.assert_close(rendering_loss(logits, coords, regions, regions=True), expected)
    ignore_channel = torch.tensor([[[[0, 1], [1, 0]]]], dtype=torch.float)
    with_ignore = torch.cat((regions, ignore_channel), 1)
    kept = torch.tensor([0, 3])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[..., kept], regions.flatten(2)[..., kept])
    torch.testing.assert_close(rendering_loss(logits, coords, with_ignore, ignore_label=9, regions=True), expected)
    assert torch.equal(selectable_voxels(with_ignore, 9, regions=True), ignore_channel == 0)
    labels = torch.tensor([[[[0, 9], [1, 2]]]])
    assert torch.equal(selectable_voxels(labels, 9, regions=False), labels != 9)
    assert selectable_voxels(labels, None, regions=False) is None
