"""CASD attention self-distillation and Inverted Attention, as functions of tensors.

Comprehensive Attention Self-Distillation (Huang et al., NeurIPS 2020) distils per-RoI attention
maps toward their element-wise maximum over views (image-wise, IW) and backbone layers
(layer-wise, LW). Inverted Attention (Huang et al., WACV 2020) erases the most attended RoI cells
before the refinement heads. Everything here is pure torch, runs on the inputs' device and loops
over no RoI; the model wires the pieces together.

Facts from the released code (DeLightCMU/CASD) that these functions deliberately do not copy:

- IW sits behind a flag that the loss-weight ramp clears at the first iteration (iteration <= 45k)
  and nothing sets again, so it never trains. Were it on, the same sum of 4 view MSEs would be
  added once per refinement branch, divided by the number of RoIs per view, weighted 0.1 and
  divided by the 4 views, which with the sigmoid squashing explains the ~1e-5 magnitude the
  reproducibility study measured. Here the loss is the sum over views of the per-element mean
  MSE, nothing else; the weight gamma is the caller's.
- LW was never released (``ca_lw`` is a flip-consistency term and unused); see
  :func:`layer_wise_distillation_loss` for the choices made here.
"""

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "ATTENTION_TRANSFORMS",
    "roi_attention_maps",
    "align_flipped",
    "max_distillation_loss",
    "image_wise_distillation_loss",
    "layer_wise_distillation_loss",
    "resize_maps",
    "stack_view_layer_maps",
    "gradcam_cell_scores",
    "inverted_attention_mask",
    "select_ia_rois",
    "apply_inverted_attention",
]

# "sigmoid_minmax": the paper / released transform; "minmax": the un-squashed [0, 1] map.
ATTENTION_TRANSFORMS = ("sigmoid_minmax", "minmax")


def _check_ndim(name: str, tensor: torch.Tensor, ndim: int, shape_doc: str) -> None:
    if tensor.dim() != ndim:
        raise ValueError(f"{name} must have shape {shape_doc}, got {tuple(tensor.shape)}")


def _check_view_flags(maps: torch.Tensor, flipped: torch.Tensor) -> None:
    _check_ndim("maps", maps, 4, "(V, R, H, W)")
    if flipped.dtype != torch.bool or flipped.shape != maps.shape[:1]:
        raise ValueError(
            f"flipped must be a bool tensor of shape (V,) = ({maps.shape[0]},), "
            f"got dtype {flipped.dtype} and shape {tuple(flipped.shape)}"
        )


def roi_attention_maps(
    pooled: torch.Tensor, *, transform: str = "sigmoid_minmax", eps: float = 1e-6
) -> torch.Tensor:
    """
    Spatial attention of each pooled RoI feature: the channel mean, min-max normalised per RoI
    over its H*W cells, then (by default) squashed by a sigmoid as in the paper.

    The sigmoid of a [0, 1] map lies in [0.5, 0.731] with slope 0.20-0.25, so squared differences
    between two such maps are 16-26x smaller than between the underlying [0, 1] maps: the paper's
    transform alone shrinks the distillation loss by more than an order of magnitude.
    ``transform="minmax"`` returns the un-squashed [0, 1] map instead.

    Args:
        pooled: (R, D, H, W) pooled RoI features.
        transform: one of ATTENTION_TRANSFORMS: "sigmoid_minmax" (paper) or "minmax".
        eps: lower bound of the max - min range; a constant map becomes all zeros (0.5 after the
            sigmoid) instead of dividing by zero.

    Returns:
        maps: (R, H, W), differentiable w.r.t. ``pooled``.
    """
    if transform not in ATTENTION_TRANSFORMS:
        raise ValueError(f"transform must be one of {ATTENTION_TRANSFORMS}, got {transform!r}")
    _check_ndim("pooled", pooled, 4, "(R, D, H, W)")
    mean = pooled.mean(dim=1)
    flat = mean.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    high = flat.max(dim=1, keepdim=True).values
    normed = ((flat - low) / (high - low).clamp(min=eps)).view_as(mean)
    return torch.sigmoid(normed) if transform == "sigmoid_minmax" else normed


def align_flipped(maps: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """
    Map horizontally flipped views back to the original orientation.

    Args:
        maps: (V, R, H, W) per-view RoI maps; RoI r is the same proposal in every view.
        flipped: (V,) bool, True where view v was flipped horizontally.

    Returns:
        (V, R, H, W): flipped views reversed along the width, others unchanged.
    """
    _check_view_flags(maps, flipped)
    return torch.where(flipped.view(-1, 1, 1, 1), maps.flip(-1), maps)


def max_distillation_loss(maps: torch.Tensor) -> torch.Tensor:
    """
    Self-distillation toward the element-wise maximum over the first axis.

    target = max_n maps[n] (detached); loss = sum_n mean((maps[n] - target)^2), the mean taken
    over all R*H*W elements. Gradients reach every map except through the target.

    Args:
        maps: (N, R, H, W) maps of the same RoIs on one grid, already aligned.

    Returns:
        scalar loss; zero when all N maps agree.
    """
    _check_ndim("maps", maps, 4, "(N, R, H, W)")
    target = maps.detach().amax(dim=0, keepdim=True)
    return (maps - target).pow(2).flatten(1).mean(dim=1).sum()


def image_wise_distillation_loss(maps: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """
    Image-wise CASD: each view's RoI attention distilled toward the maximum over the views.

    Flipped views are first mapped back (:func:`align_flipped`) so the maximum is taken over the
    same image location; comparing the aligned view with the target equals comparing the raw view
    with the flipped target, since flipping only permutes elements.

    Args:
        maps: (V, R, H, W) from :func:`roi_attention_maps` on each view's pooled features.
        flipped: (V,) bool, True for horizontally flipped views.

    Returns:
        scalar: sum over views of MSE(view, detached max over views), mean over R*H*W.
    """
    return max_distillation_loss(align_flipped(maps, flipped))


def layer_wise_distillation_loss(maps: torch.Tensor) -> torch.Tensor:
    """
    Layer-wise CASD: each layer's RoI attention distilled toward the maximum over the layers.

    The authors never released LW; wsod_d2 follows the paper's description:

    - each layer's RoI features are pooled (or its maps resized with :func:`resize_maps`) to one
      grid, turned into maps by :func:`roi_attention_maps` on the layer's own grid, and stacked;
    - target = element-wise max over the stack (detached); loss = sum over the stack of the
      per-element mean MSE, exactly :func:`max_distillation_loss`.

    The first axis is any stack of aligned maps of the same RoIs. A caller with V views and L
    layers has two choices:

    - per view: call this on each view's (L, R, H, W) stack and sum over views;
    - comprehensive attention (the paper's full CASD): build (L*V, R, H, W) with
      :func:`stack_view_layer_maps` (flipped views aligned, layers resized) and call this once,
      so the target is the max over views and layers together.

    Args:
        maps: (L, R, H, W) or (L*V, R, H, W), aligned and on one grid.

    Returns:
        scalar loss; zero when all maps agree.
    """
    return max_distillation_loss(maps)


def resize_maps(maps: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """
    Bring one layer's RoI maps to the common RoI grid.

    Bilinear interpolation with align_corners=False (cell centres, as in RoIAlign), so each output
    value is a convex combination of input values: maps in [0, 1] (or the sigmoid range) stay in
    it, and a map already of ``size`` is returned unchanged.

    Args:
        maps: (R, h, w) RoI maps of one layer.
        size: (H, W) target grid.

    Returns:
        (R, H, W), differentiable w.r.t. ``maps``.
    """
    _check_ndim("maps", maps, 3, "(R, h, w)")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (H, W) with positive entries, got {size}")
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[
        :, 0
    ]


def stack_view_layer_maps(
    layer_maps: Sequence[torch.Tensor], flipped: torch.Tensor, size: Tuple[int, int]
) -> torch.Tensor:
    """
    Stack the RoI maps of L layers and V views for comprehensive (views x layers) distillation.

    Args:
        layer_maps: L tensors, layer l of shape (V, R, h_l, w_l), each from
            :func:`roi_attention_maps` on that layer's pooled features of every view.
        flipped: (V,) bool, True for horizontally flipped views.
        size: (H, W) common grid.

    Returns:
        (L*V, R, H, W), layer-major (index l*V + v), flipped views aligned; pass it to
        :func:`layer_wise_distillation_loss`.
    """
    if len(layer_maps) == 0:
        raise ValueError("layer_maps must hold at least one layer's (V, R, h, w) maps")
    stacked = []
    for layer, maps in enumerate(layer_maps):
        if maps.dim() != 4 or maps.shape[:2] != layer_maps[0].shape[:2]:
            raise ValueError(
                f"layer_maps[{layer}] must have shape (V, R, h, w) = "
                f"{tuple(layer_maps[0].shape[:2])} + (h, w), got {tuple(maps.shape)}"
            )
        aligned = align_flipped(maps, flipped)
        stacked.append(resize_maps(aligned.flatten(0, 1), size).view(*maps.shape[:2], *size))
    return torch.cat(stacked, dim=0)


def gradcam_cell_scores(pooled: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """
    Grad-CAM-like importance of each RoI cell: A = sum_c w_c F_c with w_c the spatial mean of the
    gradient of channel c (no ReLU: only the ranking of cells is used).

    Args:
        pooled: (R, D, H, W) pooled RoI features F.
        grads: (R, D, H, W) gradient of the summed pseudo-class logits w.r.t. ``pooled``, or its
            spatial mean (R, D, 1, 1), which is all the weights need.

    Returns:
        (R, H, W), detached.
    """
    _check_ndim("pooled", pooled, 4, "(R, D, H, W)")
    if grads.shape not in (pooled.shape, pooled.shape[:2] + (1, 1)):
        raise ValueError(
            f"grads must have the shape of pooled {tuple(pooled.shape)} or "
            f"{tuple(pooled.shape[:2]) + (1, 1)}, got {tuple(grads.shape)}"
        )
    weights = grads.detach().mean(dim=(2, 3), keepdim=True)
    return (pooled.detach() * weights).sum(dim=1)


def inverted_attention_mask(
    pooled: torch.Tensor,
    grads: torch.Tensor,
    *,
    top_cells: int = 25,
    drop_cells: int = 16,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """
    Inverted Attention mask: among each RoI's ``top_cells`` highest-scoring cells
    (:func:`gradcam_cell_scores`), ``drop_cells`` chosen uniformly at random are set to 0.

    The top set always has exactly ``top_cells`` cells (ties broken by ``torch.topk``); the
    released code keeps the cells strictly above the (top_cells+1)-th score, which gives fewer
    on ties, and falls back to all cells when fewer than ``drop_cells`` remain. CASD uses 25/16
    early in training and 29/20 later (of 7x7 = 49 cells).

    Args:
        pooled: (R, D, H, W) pooled RoI features.
        grads: (R, D, H, W) gradient of sum_r logit[r, y_r] w.r.t. ``pooled``, or its spatial
            mean (R, D, 1, 1).
        top_cells: size of the most attended set, 1..H*W.
        drop_cells: cells dropped from it, 1..top_cells.
        generator: random source; the draw happens on the generator's device and is then moved to
            ``pooled``'s, so one seed gives the same mask on every device.

    Returns:
        (R, H, W) mask of ``pooled``'s dtype, 0 at dropped cells and 1 elsewhere.
    """
    scores = gradcam_cell_scores(pooled, grads).flatten(1)
    num_rois, num_cells = scores.shape
    if not 1 <= top_cells <= num_cells:
        raise ValueError(f"top_cells must be in [1, H*W={num_cells}], got {top_cells}")
    if not 1 <= drop_cells <= top_cells:
        raise ValueError(f"drop_cells must be in [1, top_cells={top_cells}], got {drop_cells}")
    top_index = scores.topk(top_cells, dim=1).indices
    draw_device = pooled.device if generator is None else generator.device
    # the drop_cells largest of iid uniform scores form a uniformly random subset of the top set
    noise = torch.rand((num_rois, top_cells), generator=generator, device=draw_device)
    pick = noise.to(pooled.device).topk(drop_cells, dim=1).indices
    mask = torch.ones_like(scores, dtype=pooled.dtype)
    mask.scatter_(1, top_index.gather(1, pick), 0.0)
    return mask.view(num_rois, *pooled.shape[2:])


def _round_half_up(count: torch.Tensor, fraction: float) -> torch.Tensor:
    # float64 keeps products such as 9 * (1/6) exactly on the .5 boundary
    return torch.floor(count.to(torch.float64) * fraction + 0.5).to(torch.int64)


def select_ia_rois(
    prob_before: torch.Tensor,
    prob_after: torch.Tensor,
    is_foreground: torch.Tensor,
    *,
    fg_fraction: float = 1.0 / 6.0,
    bg_fraction: float = 1.0 / 18.0,
    min_drop: float = 0.0,
) -> torch.Tensor:
    """
    RoIs that keep their Inverted Attention mask: those whose pseudo-class probability falls the
    most when the mask is applied, ranked separately among foreground and background RoIs.

    With n foreground RoIs, the k = floor(n * fg_fraction + 0.5) largest drops are kept (round
    half up: 9 RoIs at 1/6 give 2, 3 give 1; the released code's Python ``round`` rounds halves to
    even, giving 2 and 0); likewise for background with ``bg_fraction``. Only drops strictly
    above ``min_drop`` qualify, so fewer than k are kept when fewer RoIs lose that much (the
    released code uses 0.02). Equal drops are ranked by RoI index.

    How the released code measures the drop, for the model to reproduce (per refinement stage k,
    each stage with its own mask; the MIL head always sees the unmasked features):

    1. y_r in {0..C} are stage k's pseudo labels (0 = background); with dropout off, run the box
       head and stage k's classifier on ``pool5.detach().requires_grad_()`` and take
       ``grads = torch.autograd.grad(sum_r logit[r, y_r], feats)`` (pre-softmax logits, background
       column included);
    2. ``mask = inverted_attention_mask(feats, grads)``;
    3. without grad: prob_before[r] = softmax(head(feats))[r, y_r],
       prob_after[r] = softmax(head(feats * mask[:, None]))[r, y_r];
    4. ``selected = select_ia_rois(prob_before, prob_after, y > 0)``;
    5. ``apply_inverted_attention(pool5, mask, selected)`` feeds stage k's classifier and
       regression branch in training mode.

    The released code builds masks only for the sampled RoIs and ranks among them; pass that
    subset here to do the same. Its schedule switches (fg_fraction, bg_fraction, top_cells,
    drop_cells) from (1/6, 1/18, 25, 16) to (1/5, 1/15, 29, 20) after iteration 60k on VOC07
    (its learning-rate step at 50k plus 10k).

    Args:
        prob_before: (R,) pseudo-class probability with unmasked features.
        prob_after: (R,) the same with masked features.
        is_foreground: (R,) bool, True where the pseudo label is an object class.
        fg_fraction: share of foreground RoIs kept, in [0, 1].
        bg_fraction: share of background RoIs kept, in [0, 1].
        min_drop: a RoI qualifies only if prob_before - prob_after > min_drop.

    Returns:
        selected: (R,) bool.
    """
    for name, tensor in (("prob_after", prob_after), ("is_foreground", is_foreground)):
        if tensor.shape != prob_before.shape:
            raise ValueError(
                f"{name} must have the shape of prob_before {tuple(prob_before.shape)}, "
                f"got {tuple(tensor.shape)}"
            )
    _check_ndim("prob_before", prob_before, 1, "(R,)")
    if is_foreground.dtype != torch.bool:
        raise ValueError(f"is_foreground must be a bool tensor, got {is_foreground.dtype}")
    for name, fraction in (("fg_fraction", fg_fraction), ("bg_fraction", bg_fraction)):
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {fraction}")
    drop = (prob_before - prob_after).detach()
    order = torch.sort(drop, descending=True, stable=True).indices
    fg_sorted = is_foreground[order]
    # position of each RoI among its own group (fg or bg) in descending drop order
    rank_sorted = torch.where(fg_sorted, fg_sorted.cumsum(0) - 1, (~fg_sorted).cumsum(0) - 1)
    rank = torch.empty_like(rank_sorted).scatter_(0, order, rank_sorted)
    num_fg = is_foreground.sum()
    keep = torch.where(
        is_foreground,
        _round_half_up(num_fg, fg_fraction),
        _round_half_up(is_foreground.numel() - num_fg, bg_fraction),
    )
    return (rank < keep) & (drop > min_drop)


def apply_inverted_attention(
    pooled: torch.Tensor, mask: torch.Tensor, selected: torch.Tensor
) -> torch.Tensor:
    """
    Erase the masked cells of the selected RoIs.

    Args:
        pooled: (R, D, H, W) pooled RoI features.
        mask: (R, H, W) from :func:`inverted_attention_mask`.
        selected: (R,) bool from :func:`select_ia_rois`.

    Returns:
        (R, D, H, W), a new tensor: pooled * mask on selected RoIs, unselected RoIs bit-identical
        to ``pooled``; gradients flow to ``pooled``.
    """
    _check_ndim("pooled", pooled, 4, "(R, D, H, W)")
    expected_mask = (pooled.shape[0], *pooled.shape[2:])
    if mask.shape != expected_mask:
        raise ValueError(f"mask must have shape {expected_mask}, got {tuple(mask.shape)}")
    if selected.dtype != torch.bool or selected.shape != pooled.shape[:1]:
        raise ValueError(
            f"selected must be a bool tensor of shape ({pooled.shape[0]},), "
            f"got dtype {selected.dtype} and shape {tuple(selected.shape)}"
        )
    return torch.where(selected.view(-1, 1, 1, 1), pooled * mask[:, None], pooled)
