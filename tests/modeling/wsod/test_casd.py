import pytest
import torch

from wsod_d2.modeling.wsod.casd import (
    align_flipped,
    apply_inverted_attention,
    gradcam_cell_scores,
    image_wise_distillation_loss,
    inverted_attention_mask,
    layer_wise_distillation_loss,
    resize_maps,
    roi_attention_maps,
    select_ia_rois,
    stack_view_layer_maps,
)


def _pooled_example():
    # RoI 0: channel mean [[1, 2], [3, 4]]; RoI 1: constant channel mean 5
    roi0 = torch.tensor([[[0.0, 2.0], [4.0, 6.0]], [[2.0, 2.0], [2.0, 2.0]]])
    roi1 = torch.full((2, 2, 2), 5.0)
    return torch.stack([roi0, roi1])


def test_roi_attention_maps_sigmoid_minmax_hand_values():
    maps = roi_attention_maps(_pooled_example())
    expected = torch.tensor(
        [[[0.5, 0.5825702064623147], [0.6607563687658172, 0.7310585786300049]], [[0.5, 0.5]] * 2]
    )
    assert maps.shape == (2, 2, 2)
    torch.testing.assert_close(maps, expected)


def test_roi_attention_maps_minmax_is_unsquashed_and_per_roi():
    pooled = _pooled_example()
    pooled[1, :, 1, 1] = 25.0  # RoI 1 channel mean becomes [[5, 5], [5, 25]]
    maps = roi_attention_maps(pooled, transform="minmax")
    expected = torch.tensor([[[0.0, 1 / 3], [2 / 3, 1.0]], [[0.0, 0.0], [0.0, 1.0]]])
    torch.testing.assert_close(maps, expected)


def test_roi_attention_maps_rejects_unknown_transform():
    with pytest.raises(ValueError, match="transform") as error:
        roi_attention_maps(_pooled_example(), transform="softmax")
    assert all(word in str(error.value) for word in ("'softmax'", "'sigmoid_minmax'", "'minmax'"))
    with pytest.raises(ValueError, match="pooled"):
        roi_attention_maps(torch.zeros(2, 3, 4))


def test_roi_attention_maps_gradient_reaches_pooled():
    pooled = _pooled_example().requires_grad_()
    (roi_attention_maps(pooled) * torch.arange(8.0).view(2, 2, 2)).sum().backward()
    assert torch.isfinite(pooled.grad).all()
    assert pooled.grad[0].abs().sum() > 0


def test_align_flipped_reverses_width_of_flipped_views_only():
    maps = torch.arange(12.0).view(2, 1, 2, 3)
    aligned = align_flipped(maps, torch.tensor([False, True]))
    torch.testing.assert_close(aligned[0], maps[0])
    torch.testing.assert_close(aligned[1], torch.tensor([[[8.0, 7.0, 6.0], [11.0, 10.0, 9.0]]]))
    with pytest.raises(ValueError, match="flipped"):
        align_flipped(maps, torch.tensor([0, 1]))


def test_image_wise_loss_hand_example():
    # target = [0.6, 0.8]; each view is off by 0.4 in one of 2 cells: 2 * (0.16 / 2) = 0.16
    maps = torch.tensor([[[[0.2, 0.8]]], [[[0.6, 0.4]]]])
    loss = image_wise_distillation_loss(maps, torch.tensor([False, False]))
    torch.testing.assert_close(loss, torch.tensor(0.16))


def test_image_wise_loss_means_over_all_roi_cells():
    maps = torch.zeros(2, 2, 2, 2)
    maps[1, 1, 0, 1] = 1.0  # target has one 1 among 8 cells; view 0 misses it
    loss = image_wise_distillation_loss(maps, torch.tensor([False, False]))
    torch.testing.assert_close(loss, torch.tensor(1.0 / 8))


def test_image_wise_loss_aligns_flipped_view_before_max():
    view0 = [[[0.2, 0.8]]]
    stored_flipped = [[[0.4, 0.6]]]  # view 1 seen mirrored; aligned it is [0.6, 0.4]
    maps = torch.tensor([view0, stored_flipped])
    aligned_loss = image_wise_distillation_loss(maps, torch.tensor([False, True]))
    unaligned_loss = image_wise_distillation_loss(maps, torch.tensor([False, False]))
    torch.testing.assert_close(aligned_loss, torch.tensor(0.16))
    # without flipping back: target [0.4, 0.8], each view off by 0.2 in one cell
    torch.testing.assert_close(unaligned_loss, torch.tensor(0.04))


def test_image_wise_loss_zero_when_views_agree():
    maps = torch.rand(3, 4, 7, 7, generator=torch.Generator().manual_seed(0))
    views = torch.stack([maps[0], maps[0].flip(-1), maps[0]])
    loss = image_wise_distillation_loss(views, torch.tensor([False, True, False]))
    assert loss.item() == 0.0


def test_image_wise_loss_gradient_skips_target():
    maps = torch.tensor([[[[0.2, 0.8]]], [[[0.4, 0.6]]]], requires_grad=True)
    image_wise_distillation_loss(maps, torch.tensor([False, True])).backward()
    # d/dA mean((A - T)^2) = 2 (A - T) / 2 with T constant; view 1's gradient flipped back
    expected = torch.tensor([[[[-0.4, 0.0]]], [[[-0.4, 0.0]]]])
    torch.testing.assert_close(maps.grad, expected)


def test_layer_wise_loss_hand_example_and_detached_target():
    maps = torch.tensor(
        [[[[0.1, 0.5, 0.9]]], [[[0.3, 0.2, 0.6]]], [[[0.2, 0.7, 0.3]]]], requires_grad=True
    )
    loss = layer_wise_distillation_loss(maps)
    # target [0.3, 0.7, 0.9]; squared errors 0.08, 0.34, 0.37 over 3 cells each
    torch.testing.assert_close(loss, torch.tensor(0.79 / 3))
    loss.backward()
    target = torch.tensor([0.3, 0.7, 0.9])
    torch.testing.assert_close(maps.grad, 2 * (maps.detach() - target) / 3)


def test_resize_maps_bilinear_hand_values():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    resized = resize_maps(maps, (4, 4))
    expected = torch.tensor(
        [
            [0.0, 0.25, 0.75, 1.0],
            [0.5, 0.75, 1.25, 1.5],
            [1.5, 1.75, 2.25, 2.5],
            [2.0, 2.25, 2.75, 3.0],
        ]
    )
    torch.testing.assert_close(resized[0], expected)
    torch.testing.assert_close(resize_maps(resized, (4, 4)), resized)
    with pytest.raises(ValueError, match="size"):
        resize_maps(maps, (0, 4))


def test_stack_view_layer_maps_aligns_and_resizes():
    layer_a = torch.tensor([[[[0.1, 0.2]]], [[[0.3, 0.4]]]])  # (V=2, R=1, 1, 2)
    layer_b = torch.tensor([[[[0.0, 1.0], [0.5, 0.0]]], [[[0.2, 0.4], [0.6, 0.8]]]])
    stacked = stack_view_layer_maps([layer_a, layer_b], torch.tensor([False, True]), (1, 2))
    # layer-major; view 1 flipped back; layer b: mean of its 2 rows
    expected = torch.tensor([[[[0.1, 0.2]]], [[[0.4, 0.3]]], [[[0.25, 0.5]]], [[[0.6, 0.4]]]])
    torch.testing.assert_close(stacked, expected)
    # comprehensive target [0.6, 0.5]: errors (0.25+0.09), (0.04+0.04), (0.1225+0), (0+0.01)
    loss = layer_wise_distillation_loss(stacked)
    torch.testing.assert_close(loss, torch.tensor((0.34 + 0.08 + 0.1225 + 0.01) / 2))
    with pytest.raises(ValueError, match=r"layer_maps\[1\]"):
        stack_view_layer_maps([layer_a, layer_b[:1]], torch.tensor([False, True]), (1, 2))


def test_gradcam_cell_scores_hand_example():
    pooled = torch.tensor([[[[1.0, 2.0]], [[3.0, 5.0]]]])  # (1, 2, 1, 2)
    grads = torch.tensor([[[[1.0, 3.0]], [[-1.0, 0.0]]]])  # channel weights 2 and -0.5
    torch.testing.assert_close(gradcam_cell_scores(pooled, grads), torch.tensor([[[0.5, 1.5]]]))
    # the spatial mean of the gradient gives the same weights
    cell_mean = grads.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(gradcam_cell_scores(pooled, cell_mean), torch.tensor([[[0.5, 1.5]]]))
    with pytest.raises(ValueError, match="grads"):
        gradcam_cell_scores(pooled, grads[..., :1, :1].expand(1, 2, 2, 1))


def _ranked_rois(num_rois: int):
    # channel 0 holds a known permutation of 0..48 per RoI with gradient weight 1; channel 1 has
    # weight 0, so the cell scores are that permutation
    gen = torch.Generator().manual_seed(1)
    scores = torch.stack([torch.randperm(49, generator=gen) for _ in range(num_rois)]).float()
    pooled = torch.stack([scores.view(-1, 7, 7), torch.randn(num_rois, 7, 7, generator=gen)], 1)
    grads = torch.zeros_like(pooled)
    grads[:, 0] = 1.0
    return pooled, grads, scores


def test_inverted_attention_mask_drops_exactly_within_top_cells():
    pooled, grads, scores = _ranked_rois(6)
    mask = inverted_attention_mask(pooled, grads, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (6, 7, 7) and mask.dtype == pooled.dtype
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    dropped = mask.flatten(1) == 0
    assert dropped.sum(1).tolist() == [16] * 6
    # top 25 of a permutation of 0..48 are the scores 24..48
    assert (scores[dropped] >= 24).all()


def test_inverted_attention_mask_other_counts_and_errors():
    pooled, grads, scores = _ranked_rois(4)
    mask = inverted_attention_mask(pooled, grads, top_cells=29, drop_cells=20)
    dropped = mask.flatten(1) == 0
    assert dropped.sum(1).tolist() == [20] * 4
    assert (scores[dropped] >= 20).all()
    with pytest.raises(ValueError, match="drop_cells"):
        inverted_attention_mask(pooled, grads, top_cells=10, drop_cells=11)
    with pytest.raises(ValueError, match="top_cells"):
        inverted_attention_mask(pooled, grads, top_cells=50, drop_cells=16)
    with pytest.raises(ValueError, match="grads"):
        inverted_attention_mask(pooled, grads[:, :1])


def test_inverted_attention_mask_is_uniform_over_top_cells():
    pooled, grads, scores = _ranked_rois(1)
    pooled, grads = pooled.expand(4000, -1, -1, -1), grads.expand(4000, -1, -1, -1)
    mask = inverted_attention_mask(pooled, grads, generator=torch.Generator().manual_seed(3))
    drop_rate = (mask.flatten(1) == 0).float().mean(0)
    in_top = scores[0] >= 24
    assert (drop_rate[~in_top] == 0).all()
    # each top cell is dropped with probability 16/25; binomial sd over 4000 draws is 0.0076
    assert (drop_rate[in_top] - 16 / 25).abs().max() < 0.04


def test_inverted_attention_mask_seeded_generator_is_deterministic():
    pooled, grads, _ = _ranked_rois(5)
    masks = [
        inverted_attention_mask(pooled, grads, generator=torch.Generator().manual_seed(seed))
        for seed in (7, 7, 8)
    ]
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def _drops_example(num_fg: int, num_bg: int):
    # distinct positive drops, interleaved fg and bg so ranking must be per group
    num = num_fg + num_bg
    drop = torch.randperm(num, generator=torch.Generator().manual_seed(num)).float() + 1.0
    is_fg = torch.zeros(num, dtype=torch.bool)
    is_fg[torch.randperm(num, generator=torch.Generator().manual_seed(num + 1))[:num_fg]] = True
    before = torch.full((num,), 100.0)
    return before, before - drop, is_fg, drop


@pytest.mark.parametrize(
    "num_fg,num_bg,fg_fraction,bg_fraction,want_fg,want_bg",
    [
        (9, 27, 1 / 6, 1 / 18, 2, 2),  # 1.5 -> 2 and 1.5 -> 2 (round half up)
        (3, 9, 1 / 6, 1 / 18, 1, 1),  # 0.5 -> 1 and 0.5 -> 1
        (4, 20, 1 / 6, 1 / 18, 1, 1),  # 0.67 -> 1 and 1.11 -> 1
        (12, 50, 1 / 6, 1 / 18, 2, 3),  # 2 and 2.78 -> 3
        (7, 14, 1 / 5, 1 / 15, 1, 1),  # 1.4 -> 1 and 0.93 -> 1
        (2, 8, 1 / 6, 1 / 18, 0, 0),  # 0.33 -> 0 and 0.44 -> 0
    ],
)
def test_select_ia_rois_counts(num_fg, num_bg, fg_fraction, bg_fraction, want_fg, want_bg):
    before, after, is_fg, drop = _drops_example(num_fg, num_bg)
    selected = select_ia_rois(
        before, after, is_fg, fg_fraction=fg_fraction, bg_fraction=bg_fraction
    )
    assert selected.dtype == torch.bool
    assert int((selected & is_fg).sum()) == want_fg
    assert int((selected & ~is_fg).sum()) == want_bg
    for group, want in ((is_fg, want_fg), (~is_fg, want_bg)):
        largest = drop[group].sort(descending=True).values[:want]
        assert sorted(drop[selected & group].tolist()) == sorted(largest.tolist())


def test_select_ia_rois_hand_case_min_drop_and_ties():
    before = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.9, 0.4])
    after = torch.tensor([0.5, 0.4, 0.69, 0.6, 0.1, 0.5, 0.3])
    # drops 0.4, 0.4, 0.01, 0.0, 0.4, 0.4, 0.1
    is_fg = torch.tensor([True, True, True, True, False, False, False])
    # 4 fg at 1/2 -> 2: the tied 0.4 drops of RoIs 0 and 1; 3 bg at 1/3 -> 1: RoI 4 wins the tie
    selected = select_ia_rois(before, after, is_fg, fg_fraction=0.5, bg_fraction=1 / 3)
    assert selected.tolist() == [True, True, False, False, True, False, False]
    # keep 3 of 4 fg, but only drops above 0.02 qualify: RoI 2 (0.01) and RoI 3 (0.0) fail
    selected = select_ia_rois(
        before, after, is_fg, fg_fraction=0.75, bg_fraction=1.0, min_drop=0.02
    )
    assert selected.tolist() == [True, True, False, False, True, True, True]


def test_select_ia_rois_errors_and_empty():
    probs = torch.rand(4)
    with pytest.raises(ValueError, match="is_foreground"):
        select_ia_rois(probs, probs, torch.ones(4))
    with pytest.raises(ValueError, match="prob_after"):
        select_ia_rois(probs, probs[:3], torch.ones(4, dtype=torch.bool))
    with pytest.raises(ValueError, match="fg_fraction"):
        select_ia_rois(probs, probs, torch.ones(4, dtype=torch.bool), fg_fraction=1.5)
    empty = select_ia_rois(torch.zeros(0), torch.zeros(0), torch.zeros(0, dtype=torch.bool))
    assert empty.shape == (0,)


def test_apply_inverted_attention_masks_selected_only():
    pooled = torch.randn(3, 4, 7, 7, generator=torch.Generator().manual_seed(5))
    pooled.requires_grad_()
    original = pooled.detach().clone()
    mask = torch.ones(3, 7, 7)
    mask[:, 2, 3] = 0.0
    mask[:, 6, 0] = 0.0
    selected = torch.tensor([True, False, True])
    out = apply_inverted_attention(pooled, mask, selected)
    assert torch.equal(out[1], original[1])
    assert torch.equal(out[0], original[0] * mask[0])
    assert (out[2][:, 2, 3] == 0).all() and (out[2][:, 6, 0] == 0).all()
    assert torch.equal(pooled.detach(), original)
    out.sum().backward()
    torch.testing.assert_close(pooled.grad[1], torch.ones(4, 7, 7))
    torch.testing.assert_close(pooled.grad[0], mask[0].expand(4, 7, 7))
    with pytest.raises(ValueError, match="selected"):
        apply_inverted_attention(pooled, mask, torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match="mask"):
        apply_inverted_attention(pooled, mask[:2], selected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    pooled, _, _ = _ranked_rois(8)
    grads = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(2))
    flipped = torch.tensor([False, True, False, True])
    maps = torch.rand(4, 8, 7, 7, generator=torch.Generator().manual_seed(4))
    before, after, is_fg, _ = _drops_example(6, 18)

    def run(device):
        to = {"device": device}
        mask = inverted_attention_mask(
            pooled.to(**to), grads.to(**to), generator=torch.Generator().manual_seed(9)
        )
        selected = select_ia_rois(before.to(**to), after.to(**to), is_fg.to(**to))
        return [
            roi_attention_maps(pooled.to(**to)),
            image_wise_distillation_loss(maps.to(**to), flipped.to(**to)),
            layer_wise_distillation_loss(maps.to(**to)),
            resize_maps(maps[0].to(**to), (14, 14)),
            mask,
            selected,
            apply_inverted_attention(pooled.to(**to), mask, selected[:8]),
        ]

    for cpu, cuda in zip(run("cpu"), run("cuda")):
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), cpu)
