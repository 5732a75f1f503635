"""The patch model's attention block, GRU head, normalisation and their wiring (Sec. II-E, Fig. 3)."""

from __future__ import annotations

import math

import pytest
import torch

from patchlesion.errors import PatchlesionError
from patchlesion.method.aggregation import AGGREGATIONS
from patchlesion.method.aggregation import ATTENTIONS as ATTENTION_REGISTRY
from patchlesion.method.heads import GRUHead, PatchAttention
from patchlesion.method.model import PatchLesionModel, build_model
from patchlesion.method.runs import RunSpec

ATTENTIONS = ("none", "initial", "end", "dual")
PRESENT = {"none": set(), "initial": {"initial"}, "end": {"end"}, "dual": {"initial", "end"}}


def test_attention_places_say_where_blocks_go():
    assert ATTENTION_REGISTRY.names() == list(ATTENTIONS)
    assert {name: set(place.blocks) for name, place in ATTENTION_REGISTRY.items()} == PRESENT


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _hand_attention(means: list[float], weight: list[list[float]], bias: list[float]) -> list[float]:
    """a = sigmoid(W m + b), written out element by element."""
    n = len(means)
    return [_sigmoid(sum(weight[i][j] * means[j] for j in range(n)) + bias[i]) for i in range(n)]


def _set_linear(block: PatchAttention, weight: list[list[float]], bias: list[float]) -> None:
    with torch.no_grad():
        block.fc.weight.copy_(torch.tensor(weight))
        block.fc.bias.copy_(torch.tensor(bias))


WEIGHT = [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0], [2.0, 1.0, 1.0]]
BIAS = [0.1, -0.2, 0.3]


def test_initial_attention_equals_hand_computation():
    # B=1, N=3, C=1, 2x2 crops; the last crop is zeroed (patch dropout).
    crops = [[[0.0, 1.0], [0.5, 0.5]], [[0.2, 0.2], [0.2, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    x = torch.tensor(crops).view(1, 3, 1, 2, 2)
    block = PatchAttention(3)
    _set_linear(block, WEIGHT, BIAS)
    out, a = block(x)

    means = [0.5, 0.4, 0.0]  # (0+1+.5+.5)/4, (.2+.2+.2+1)/4, zeroed crop
    expected_a = _hand_attention(means, WEIGHT, BIAS)
    # e.g. crop 0: sigmoid(1*.5 - 2*.4 + .5*0 + .1) = sigmoid(-0.2)
    assert expected_a[0] == pytest.approx(_sigmoid(-0.2))
    assert a.shape == (1, 3)
    torch.testing.assert_close(a, torch.tensor([expected_a]))
    expected = [[[[v * expected_a[j] for v in row] for row in crop]] for j, crop in enumerate(crops)]
    assert out.shape == x.shape
    torch.testing.assert_close(out, torch.tensor([expected]))


def test_end_attention_equals_hand_computation():
    # (B=2, N=3, F=4) pooled features; second sample's middle crop is all zeros.
    feats = [
        [[1.0, 2.0, 3.0, 2.0], [-1.0, 0.0, 1.0, 4.0], [0.5, 0.5, 0.5, 0.5]],
        [[0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, 0.0], [2.0, -2.0, 1.0, 3.0]],
    ]
    x = torch.tensor(feats)
    block = PatchAttention(3)
    _set_linear(block, WEIGHT, BIAS)
    out, a = block(x)

    hand_means = [[2.0, 1.0, 0.5], [1.0, 0.0, 1.0]]
    expected_a = [_hand_attention(m, WEIGHT, BIAS) for m in hand_means]
    torch.testing.assert_close(a, torch.tensor(expected_a))
    expected = [
        [[v * expected_a[b][j] for v in crop] for j, crop in enumerate(sample)] for b, sample in enumerate(feats)
    ]
    torch.testing.assert_close(out, torch.tensor(expected))


def test_zeroed_crops_give_zero_means_and_stay_zero():
    torch.manual_seed(0)
    x = torch.rand(2, 5, 3, 4, 4)
    x[0, 1] = 0.0
    x[1, 4] = 0.0
    block = PatchAttention(5)
    with torch.no_grad():
        block.fc.weight.zero_()
        block.fc.weight[:, 1] = 1.0  # a_i = sigmoid(m_1 + b_i): reads crop 1's mean alone
    out, a = block(x)
    torch.testing.assert_close(a[0], torch.sigmoid(block.fc.bias.detach()))  # m_1 = 0 in sample 0
    assert torch.all(out[0, 1] == 0) and torch.all(out[1, 4] == 0)


def test_attention_parameters_and_shape_check():
    block = PatchAttention(9)
    assert sum(p.numel() for p in block.parameters()) == 9 * 9 + 9
    with pytest.raises(ValueError, match="9 crops"):
        block(torch.rand(2, 5, 8))


def test_gru_head_uses_last_step_of_a_plain_gru():
    torch.manual_seed(0)
    head = GRUHead(6, 4, hidden=8)
    assert head.gru.num_layers == 1 and not head.gru.bidirectional and head.gru.batch_first
    features = torch.randn(3, 5, 6)
    logits = head(features)
    assert logits.shape == (3, 4)

    # The same GRU run by hand step by step: only the final hidden state is classified.
    gru = torch.nn.GRU(6, 8, batch_first=True)
    gru.load_state_dict(head.gru.state_dict())
    h = torch.zeros(1, 3, 8)
    for t in range(5):
        _, h = gru(features[:, t : t + 1], h)
    torch.testing.assert_close(logits, head.classifier(h[0]))
    # Crop order matters (a sequence, not a set); and the output is not the first step's.
    assert not torch.allclose(head(features.flip(1)), logits)
    torch.testing.assert_close(head(features[:, :1]), head.classifier(gru(features[:, :1])[0][:, 0]))


def test_gru_registry_entry_and_default_hidden():
    entry = AGGREGATIONS["gru"]
    assert entry.per_crop is False
    head = entry.build(64, 7, 9)
    assert head.gru.hidden_size == 1024 and head.classifier.in_features == 1024
    assert not hasattr(head, "crop_logits")


@pytest.mark.parametrize("n_crops", [5, 9])
@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("aggregation", ["mean", "gru"])
def test_output_shapes_and_attention_weights(aggregation, attention, n_crops):
    torch.manual_seed(0)
    model = PatchLesionModel("tiny", 7, aggregation, n_crops, attention=attention)
    crops = torch.rand(2, n_crops, 3, 16, 16)
    logits = model(crops)
    assert logits.shape == (2, 7)
    again, weights = model(crops, return_attention=True)
    assert again.shape == (2, 7)
    assert set(weights) == PRESENT[attention]
    for a in weights.values():
        assert a.shape == (2, n_crops)
        assert torch.all((a > 0) & (a < 1))
    assert model.features(crops).shape == (2, n_crops, 64)


@pytest.mark.parametrize("attention", ["initial", "end", "dual"])
def test_gradients_reach_attention_parameters(attention):
    torch.manual_seed(0)
    model = PatchLesionModel("tiny", 3, "mean", 5, attention=attention)
    loss = torch.nn.functional.cross_entropy(model(torch.rand(2, 5, 3, 16, 16)), torch.tensor([0, 2]))
    loss.backward()
    blocks = [b for b in (model.initial_attention, model.end_attention) if b is not None]
    assert len(blocks) == len(PRESENT[attention])
    for block in blocks:
        for parameter in block.parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0


def test_initial_attention_reweights_the_backbone_input():
    torch.manual_seed(0)
    model = PatchLesionModel("tiny", 3, "mean", 5, attention="initial").eval()
    crops = torch.rand(2, 5, 3, 16, 16)
    reweighted, a = model.initial_attention(crops)
    torch.testing.assert_close(model.features(crops), model.backbone(reweighted.flatten(0, 1)).view(2, 5, -1))
    torch.testing.assert_close(model(crops, return_attention=True)[1]["initial"], a)


def test_imagenet_normalisation_equals_manual_normalisation():
    torch.manual_seed(0)
    raw = PatchLesionModel("tiny", 7, "mean", 5, attention="dual", normalisation="none").eval()
    torch.manual_seed(0)
    norm = PatchLesionModel("tiny", 7, "mean", 5, attention="dual", normalisation="imagenet").eval()
    assert norm.state_dict().keys() == raw.state_dict().keys()  # buffers are constants, not checkpointed
    crops = torch.rand(2, 5, 3, 16, 16)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)
    assert not torch.allclose(norm(crops), raw(crops))
    torch.testing.assert_close(norm(crops), raw((crops - mean) / std))
    out, weights = norm(crops, return_attention=True)
    _, manual_weights = raw((crops - mean) / std, return_attention=True)
    torch.testing.assert_close(weights["initial"], manual_weights["initial"])


def test_crop_logits_only_for_mean_head_without_attention():
    crops = torch.rand(1, 5, 3, 16, 16)
    assert PatchLesionModel("tiny", 7, "mean", 5).crop_logits(crops).shape == (1, 5, 7)
    combinations = [("gru", "none"), ("mean", "initial"), ("mean", "end"), ("mean", "dual"), ("gru", "dual")]
    for aggregation, attention in combinations:
        model = PatchLesionModel("tiny", 7, aggregation, 5, attention=attention)
        with pytest.raises(PatchlesionError, match="per-crop logits"):
            model.crop_logits(crops)


def test_unknown_attention_or_normalisation_is_rejected():
    with pytest.raises(ValueError, match="attention"):
        PatchLesionModel("tiny", 7, "mean", 5, attention="middle")
    with pytest.raises(ValueError, match="normalisation"):
        PatchLesionModel("tiny", 7, "mean", 5, normalisation="zscore")


def test_build_model_passes_attention_and_normalisation():
    spec = RunSpec("tiny", strategy="ordered", n_crops=5, aggregation="gru", attention="end", normalisation="imagenet")
    model = build_model(spec, 7)
    assert model.attention == "end" and model.normalisation == "imagenet"
    assert model.initial_attention is None and model.end_attention is not None
    assert isinstance(model.head, GRUHead) and model.n_crops == 5
    default = build_model(RunSpec("tiny", n_crops=5), 7)
    assert default.attention == "none" and default.normalisation == "none"
    assert default.initial_attention is None and default.end_attention is None
