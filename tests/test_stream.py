"""vitlens.streaming: the one loop (stream), capture and eval_mode, and the pure reductions
analyses hand the loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vitlens.analyses.attention import subset_cka
from vitlens.analyses.residual import skip_statistics
from vitlens.core.cka import MinibatchCKA, UCenteredGram, grouped_centered_grams
from vitlens.models import ResidualBranch
from vitlens.streaming import (
    BatchRows,
    RunOptions,
    Taps,
    capture,
    eval_mode,
    inference_layout,
    layer_shapes,
    run_with_cache,
    stream,
)


class TwoLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.drop(self.conv(x))


def _nothing(_images, _stores):
    return None


def test_stream_hands_every_batch_and_counts_images():
    model, seen = TwoLayers(), []
    images = torch.randn(10, 3, 8, 8)
    count = stream(
        Taps(model, ["conv"]),
        images,
        lambda x, stores: seen.append((x.shape[0], stores[0]["conv"].shape)),
        run=RunOptions(batch_size=4, progress=False),
    )
    assert count == 10
    assert seen == [(4, (4, 4, 8, 8)), (4, (4, 4, 8, 8)), (2, (2, 4, 8, 8))]


def test_inference_batches_go_channels_last_on_the_cpu_and_gradients_keep_their_layout():
    images = torch.randn(6, 3, 8, 8)
    laid_out = inference_layout(images)
    assert laid_out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(laid_out, images) and laid_out.shape == images.shape
    not_images = images[:, 0]
    assert inference_layout(not_images) is not_images  # not 4-D: returned as given
    model, layouts = TwoLayers(), []
    model.conv.register_forward_pre_hook(
        lambda _m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    for gradients in (False, True):
        stream(
            Taps(model, ["conv"]),
            images,
            _nothing,
            run=RunOptions(batch_size=6, progress=False),
            gradients=gradients,
        )
    assert layouts == [True, False]
    # the captured activations hold the same values as a plain forward pass
    expected = model.eval()(images)
    assert torch.allclose(run_with_cache(model, images, ["conv"])["conv"], expected, atol=1e-6)


def test_stream_restores_modes_and_hooks_when_reduce_raises():
    model = TwoLayers().train()
    model.drop.eval()  # a submodule the user had put in eval

    def fail(_images, stores):
        assert not model.training and torch.is_inference_mode_enabled()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        stream(
            Taps(model, ["conv"]),
            torch.randn(4, 3, 8, 8),
            fail,
            run=RunOptions(batch_size=4, progress=False),
        )
    assert model.training
    assert not model.conv._forward_hooks
    assert not torch.is_inference_mode_enabled()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.randn(0, 3, 8, 8), "no images"),
        (torch.full((4, 3, 8, 8), float("nan")), "NaN or infinite"),
        (DataLoader(TensorDataset(torch.randn(9, 3, 8, 8)), batch_size=4), "last batch of 1"),
    ],
)
def test_stream_refuses_bad_data(data, message):
    calls = []
    with pytest.raises(ValueError, match=message):
        stream(
            Taps(TwoLayers(), ["conv"]),
            data,
            lambda *_: calls.append(1),
            run=RunOptions(batch_size=4, progress=False),
            min_batch=4,
        )
    if message == "last batch of 1":
        assert not calls  # refused before the first batch's work


def test_stream_refuses_bad_layers_before_any_work():
    model = TwoLayers()
    with pytest.raises(ValueError, match="name at least one"):
        stream(Taps(model, []), torch.randn(4, 3, 8, 8), _nothing, run=RunOptions(batch_size=4))
    with pytest.raises(TypeError, match="not the string"):
        stream(Taps(model, "conv"), torch.randn(4, 3, 8, 8), _nothing, run=RunOptions(batch_size=4))
    with pytest.raises(ValueError, match="unknown layer"):
        stream(
            Taps(model, ["nope"]), torch.randn(4, 3, 8, 8), _nothing, run=RunOptions(batch_size=4)
        )
    with pytest.raises(ValueError, match="did not run"):
        stream(
            Taps(model, ["unused"]),
            torch.randn(4, 3, 8, 8),
            _nothing,
            run=RunOptions(batch_size=4, progress=False),
        )
    with pytest.raises(ValueError, match="more than one Taps"):
        stream(
            [Taps(model, ["conv"]), Taps(model, ["drop"])],
            torch.randn(4, 3, 8, 8),
            _nothing,
            run=RunOptions(batch_size=4),
        )


def test_stream_with_gradients_reaches_the_input_and_refuses_inference_mode():
    model = TwoLayers()
    grads = []

    def gradient(images, stores):
        (grad,) = torch.autograd.grad(stores[0]["conv"].sum(), images)
        grads.append(grad)

    stream(
        Taps(model, ["conv"]),
        torch.randn(4, 3, 8, 8),
        gradient,
        run=RunOptions(batch_size=4, progress=False),
        gradients=True,
    )
    assert grads[0].shape == (4, 3, 8, 8) and grads[0].abs().sum() > 0
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        stream(
            Taps(model, ["conv"]),
            torch.randn(4, 3, 8, 8),
            gradient,
            run=RunOptions(batch_size=4),
            gradients=True,
        )


def test_per_layer_transforms():
    model, shapes = TwoLayers(), {}

    def record(_images, stores):
        shapes.update({name: tuple(v.shape) for name, v in stores[0].items()})

    stream(
        Taps(model, ["conv", "drop"], {"conv": UCenteredGram()}),
        torch.randn(6, 3, 8, 8),
        record,
        run=RunOptions(batch_size=6, progress=False),
    )
    assert shapes == {"conv": (6, 6), "drop": (6, 4, 8, 8)}


def test_subset_cka_equals_cka_of_the_concatenated_heads():
    torch.manual_seed(0)
    heads, n, d, batches = 4, 12, 5, 3
    outputs = [torch.randn(heads, n, d, dtype=torch.float64) for _ in range(batches)]
    other = [torch.randn(2, n, 7, dtype=torch.float64) for _ in range(batches)]
    distances = torch.tensor([3.0, 1.0, 4.0, 2.0])  # most local first: heads 1, 3, 0, 2
    head_grams = [grouped_centered_grams(o) for o in outputs]
    other_grams = [torch.stack([UCenteredGram()(layer) for layer in o]) for o in other]
    subsets, matrix, (cross, self_a, self_b) = subset_cka(head_grams, other_grams, distances, k=2)
    assert subsets.tolist() == [[1, 3], [3, 0], [0, 2]]
    # the per-batch terms (for the bootstrap) resum to the estimate
    assert cross.shape == (batches, 3, 2)
    resummed = cross.sum(0) / np.sqrt(self_a.sum(0)[:, None] * self_b.sum(0)[None, :])
    assert np.allclose(resummed, matrix.numpy(), atol=1e-12)
    for row, members in enumerate(subsets.tolist()):
        reference = MinibatchCKA()
        for o, g in zip(outputs, other, strict=True):
            joined = torch.cat([o[h] for h in members], dim=1)  # (n, k * d)
            reference.update([joined], [g[0], g[1]])
        assert torch.allclose(matrix[row], reference.compute()[0], atol=1e-12)


def test_skip_statistics_by_hand():
    z = torch.tensor([[[3.0, 4.0]]])  # (n=1, tokens=1, C=2), norm 5
    f = torch.tensor([[[0.0, 2.0]]])  # norm 2
    branch = ResidualBranch("sum", "attention", "z", "f")
    ratios, cosines = skip_statistics([branch], {"z": z, "f": f})
    assert ratios[0].item() == pytest.approx(2.5)
    assert cosines[0].item() == pytest.approx((9 + 24) / (5 * (9 + 36) ** 0.5))


@pytest.mark.parametrize(
    "analysis",
    ["mean_attention_distance", "residual_norm_ratios", "effective_receptive_field"],
)
@pytest.mark.parametrize(
    ("images", "message"),
    [(torch.zeros(0, 3, 32, 32), "no images"), (torch.full((4, 3, 32, 32), float("nan")), "NaN")],
)
def test_analyses_refuse_empty_or_non_finite_images(small_vit, analysis, images, message):
    import vitlens

    with pytest.raises(ValueError, match=message):
        getattr(vitlens, analysis)(small_vit, images, run=RunOptions(batch_size=4, progress=False))


def test_receptive_fields_refuse_inference_mode_and_an_empty_layer_list(small_vit):
    from vitlens import effective_receptive_field

    images = torch.randn(4, 3, 32, 32)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        effective_receptive_field(
            small_vit, images, ["blocks.0"], run=RunOptions(batch_size=16, progress=False)
        )
    with pytest.raises(ValueError, match="at least one"):
        effective_receptive_field(
            small_vit, images, [], run=RunOptions(batch_size=16, progress=False)
        )


# ------------------------------------------ capture: copies, layer names; eval_mode (issue #16)


def test_capture_stores_a_copy_that_inplace_ops_cannot_overwrite():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model[0](x)
    assert float(expected.min()) < 0
    with torch.no_grad(), capture(model, ["0"]) as store:
        model(x)
    torch.testing.assert_close(store["0"], expected)


def test_a_transform_returning_its_input_is_copied_too():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(inplace=True))
    x = torch.randn(16, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model[0](x)
    with torch.no_grad(), capture(model, ["0"], transform=lambda v: v.float()) as store:
        model(x)
    torch.testing.assert_close(store["0"], expected)


def test_a_string_as_layers_is_refused_with_what_to_write(zoo_shaped):
    vit = zoo_shaped("vit-pt-small")
    images = torch.randn(4, 3, 32, 32)
    with pytest.raises(
        TypeError, match=r"sequence of names such as \['blocks.0'\], not the string 'blocks.0'"
    ):
        run_with_cache(vit, images, "blocks.0")
    with pytest.raises(TypeError, match="split into characters"), capture(vit, list("blocks.0")):
        pass


def test_single_character_module_names_are_still_layers():
    model = nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 2))
    with torch.no_grad(), capture(model, ["0", "1", "2"]) as store:
        model(torch.randn(3, 2))
    assert list(store) == ["0", "1", "2"]


def test_eval_mode_restores_every_submodules_own_flag():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    model.train()
    model[1].eval()  # frozen BatchNorm
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and model[0].training and model[2].training
    assert not model[1].training


def test_eval_mode_restores_flags_when_the_body_raises():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout())
    model[1].eval()
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError
    assert model.training and not model[1].training


def test_layer_shapes_come_from_one_blank_image(zoo_shaped):
    vit = zoo_shaped("vit-cls")  # 32 px, 4-px patches: an 8x8 grid and a class token
    shapes = layer_shapes(vit, ["blocks.2", "patch_embed"])
    assert list(shapes) == ["blocks.2", "patch_embed"]
    assert shapes["blocks.2"] == (1, 65, vit.embed_dim)
    with pytest.raises(ValueError):
        layer_shapes(vit, ["blocks.99"])


def test_layer_shapes_leave_a_training_model_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    model.pretrained_cfg = {"input_size": (3, 8, 8)}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert layer_shapes(model, ["1"])["1"] == (1, 4, 6, 6)
    assert all(m.training for m in model.modules())
    after = model.state_dict()  # BatchNorm's running statistics and batch count kept
    assert all(torch.equal(before[k], after[k]) for k in before)


# --------------------------------------------- rows of every batch, in one allocation


def test_batch_rows_are_the_batches_in_order_whether_or_not_their_number_is_known():
    batches = [torch.randn(n, 3, 2) for n in (4, 4, 1)]
    for expected in (9, None, 2, 0, 20):  # exact, unknown, too few (grows), too many
        rows = BatchRows(expected)
        for batch in batches:
            rows.add(batch)
        torch.testing.assert_close(rows.gathered(), torch.cat(batches), rtol=0, atol=0)
        assert rows.gathered().shape == (9, 3, 2)
    assert BatchRows.for_data(torch.zeros(9, 3, 4, 4))._expected == 9
    rows = BatchRows(9)
    rows.add(torch.zeros(4, 3, 2))
    with pytest.raises(ValueError, match=r"do not match the earlier batches' \(3, 2\)"):
        rows.add(torch.zeros(4, 2, 3))
    with pytest.raises(ValueError, match="no batch was added"):
        BatchRows().gathered()
    for bad in (-1, 2.5, "9"):
        with pytest.raises(ValueError, match="expected must be None or an integer >= 0"):
            BatchRows(bad)


def test_batch_rows_allocate_once_when_the_number_of_rows_is_known(monkeypatch):
    # One allocation, made at the first batch: nothing per batch outlives its batch (kept
    # per-batch tensors fragment glibc's heap between forward passes; see BatchRows).
    allocations = []
    new_empty = torch.Tensor.new_empty

    def counted(self, *args, **kwargs):
        allocations.append(args)
        return new_empty(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "new_empty", counted)
    rows = BatchRows.for_data(torch.zeros(10, 3, 4, 4))
    for n in (4, 4, 2):
        rows.add(torch.randn(n, 8))
    assert allocations == [((10, 8),)]
    assert rows.gathered().shape == (10, 8)
    unknown = BatchRows()
    for n in (4, 4, 2):
        unknown.add(torch.randn(n, 8))
    assert allocations[1:] == [((4, 8),), ((8, 8),), ((16, 8),)]  # doubled as rows came
