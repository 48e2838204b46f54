"""Small-object consistency for WSOL ("Small Object Matters in WSOL", CropCAM).

Training: the CAM of the first pass (at feature resolution) is thresholded at ``tau`` times its
maximum; the union box of all foreground components, squared, is cropped from the image and
zoomed to the input size; a second pass on the zoomed view gives the zoomed CAM, which is resized
back into the crop region of a copy of the original CAM (M_zoom); the background map is
1 - M_zoom. Both are targets (detached). The loss is

    2 * lam * (CE_orig + CE_zoom) / 2
    + 2 * (1 - lam) * (l_pos * (1 - cos(M, M_zoom)) - l_neg * (1 - cos(M, M_bg)) + 1).

Inference: the pasted map replaces the CAM when the crop covers less than ``nu`` of the image.

Defaults and the README table (lam = lambda_3 = ``--loss_ratio``, l_pos = lambda_1 =
``--loss_pos``, l_neg = lambda_2 = ``--loss_neg``, tau = ``--crop_threshold``, nu =
``--crop_ratio``; the mapping is read off the released training scripts):

    arch / dataset         l_pos  l_neg  lam   tau   nu
    ResNet50 ImageNet      0.90   0.10   0.90  0.15  0.30   <- defaults here (README's example)
    ResNet50 CUB           0.50   0.20   0.80  0.20  0.80
    ResNet50 OpenImages    1.50   0.50   0.50  0.30  1.00
    VGG16 ImageNet         0.80   0.50   0.80  0.50  0.90
    VGG16 CUB              0.90   0.10   0.70  0.70  0.20
    VGG16 OpenImages       1.00   0.70   0.70  0.05  0.10
    Inception ImageNet     0.60   0.70   0.70  0.50  0.60
    Inception CUB          1.00   0.20   0.80  0.40  0.10
    Inception OpenImages   0.20   1.30   0.90  0.15  0.10

(The released ResNet50/CUB script uses 1.00 / 0.10 / 0.65 / 0.35 / 0.4 instead of its row.)

Choices (the released training path crashes: it pastes with image-scale coordinates into the
feature-resolution CAM; this is written from the description):

- The CAM is min-max normalised before thresholding, and the threshold is strict (``> tau*max``),
  as cv2.THRESH_BINARY in the released code. An empty foreground gives the whole image.
- The union box of all foreground pixels equals the union of all contour boxes, so no contours
  are traced. The box is squared around its centre (side = max(w, h), the odd extra cell going
  left/top like the released code) and then shifted, not clipped, to lie inside the CAM, so the
  zoom keeps the aspect ratio; only a side longer than the CAM itself is clipped. The released
  code shifts at the left/top border but clips at the right/bottom one.
- Boxes are in image pixels (continuous, pixel i covers [i, i + 1)); a CAM cell maps to
  ``image / cam`` pixels along each axis, so a square box is square in pixels when the CAM stride
  is the same along both axes.
- Cropping uses ``torchvision.ops.roi_align`` (bilinear, aligned) instead of slicing and bicubic
  resizing; paste-back uses antialiased bilinear resizing, then min-max normalises the pasted
  region per map (as the released code does), so M_zoom and 1 - M_zoom lie in [0, 1] when the
  original CAM does (use :func:`normalize_cam`).
- cos(., .) is computed per sample over all its CAM cells and averaged over the batch; the
  released code takes one cosine over the whole batch tensor.
- Classification is single-label cross-entropy, as in the paper.
"""

from typing import Dict, Sequence, Tuple

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

__all__ = [
    "normalize_cam",
    "cam_crop_boxes",
    "cam_crop_box",
    "crop_and_zoom",
    "paste_back",
    "background_map",
    "cropcam_loss",
    "use_zoomed_map",
]


def normalize_cam(cam: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """
    Min-max normalise every map to [0, 1] over its last two dims; a constant map becomes 0.

    Args:
        cam: (..., h, w).

    Returns:
        (..., h, w).
    """
    flat = cam.flatten(-2)
    low = flat.amin(dim=-1, keepdim=True)
    high = flat.amax(dim=-1, keepdim=True)
    return ((flat - low) / (high - low).clamp(min=eps)).view_as(cam)


def _extent(present: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, size) foreground flags -> first and one-past-last foreground index, (B,) each."""
    size = present.shape[1]
    first = present.to(torch.uint8).argmax(dim=1)
    end = size - present.flip(1).to(torch.uint8).argmax(dim=1)
    return first, end


def _squared(
    first: torch.Tensor, end: torch.Tensor, side: torch.Tensor, size: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Grow [first, end) to ``side`` cells around its centre, then shift it inside [0, size)."""
    side = side.clamp(max=size)
    start = first - torch.div(side - (end - first) + 1, 2, rounding_mode="floor")
    start = torch.minimum(start.clamp(min=0), size - side)
    return start, start + side


def cam_crop_boxes(
    cams: torch.Tensor, *, tau: float = 0.15, image_hw: Tuple[int, int], eps: float = 1e-8
) -> torch.Tensor:
    """
    Squared union box of the above-threshold cells of each CAM, in image pixels.

    Args:
        cams: (B, h, w) CAMs at feature resolution (normalised here first).
        tau: threshold as a fraction of the maximum.
        image_hw: (H, W) of the image the CAM was computed on.
        eps: guard of the min-max normalisation.

    Returns:
        boxes: (B, 4) float (x1, y1, x2, y2) in image pixels.
    """
    if cams.dim() != 3:
        raise ValueError(f"cams must have shape (B, h, w), got {tuple(cams.shape)}")
    if not 0.0 <= tau < 1.0:
        raise ValueError(f"tau must be in [0, 1), got {tau}")
    if len(image_hw) != 2 or min(image_hw) <= 0:
        raise ValueError(f"image_hw must be a positive (H, W), got {image_hw}")
    _, height, width = cams.shape
    norm = normalize_cam(cams, eps=eps)
    peak = norm.flatten(1).amax(dim=1).view(-1, 1, 1)
    fg = norm > tau * peak
    empty = ~fg.flatten(1).any(dim=1)
    fg = fg | empty.view(-1, 1, 1)
    x_first, x_end = _extent(fg.any(dim=1))
    y_first, y_end = _extent(fg.any(dim=2))
    side = torch.maximum(x_end - x_first, y_end - y_first)
    x1, x2 = _squared(x_first, x_end, side, width)
    y1, y2 = _squared(y_first, y_end, side, height)
    scale = cams.new_tensor(
        [image_hw[1] / width, image_hw[0] / height, image_hw[1] / width, image_hw[0] / height]
    )
    return torch.stack([x1, y1, x2, y2], dim=1).to(cams.dtype) * scale


def cam_crop_box(
    cam: torch.Tensor, *, tau: float = 0.15, image_hw: Tuple[int, int], eps: float = 1e-8
) -> torch.Tensor:
    """
    :func:`cam_crop_boxes` for one CAM.

    Args:
        cam: (h, w).

    Returns:
        box: (4,) float (x1, y1, x2, y2) in image pixels.
    """
    if cam.dim() != 2:
        raise ValueError(f"cam must have shape (h, w), got {tuple(cam.shape)}")
    return cam_crop_boxes(cam.unsqueeze(0), tau=tau, image_hw=image_hw, eps=eps)[0]


def crop_and_zoom(
    images: torch.Tensor, boxes: torch.Tensor, out_size: int, *, sampling_ratio: int = 0
) -> torch.Tensor:
    """
    Crop every box from its image and resize it to out_size x out_size (bilinear RoIAlign).

    Args:
        images: (B, 3, H, W).
        boxes: (B, 4) (x1, y1, x2, y2) in pixels, one per image.
        out_size: side of the zoomed view.
        sampling_ratio: RoIAlign samples per bin and axis; 0 picks ceil(box / out_size), i.e.
            plain bilinear interpolation when zooming in.

    Returns:
        views: (B, 3, out_size, out_size).
    """
    if images.dim() != 4:
        raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(
            f"boxes must have shape (B, 4) = ({images.shape[0]}, 4), got {tuple(boxes.shape)}"
        )
    index = torch.arange(images.shape[0], device=images.device, dtype=images.dtype)
    rois = torch.cat([index[:, None], boxes.to(images.dtype)], dim=1)
    return roi_align(
        images,
        rois,
        output_size=(out_size, out_size),
        spatial_scale=1.0,
        sampling_ratio=sampling_ratio,
        aligned=True,
    )


def paste_back(
    cam: torch.Tensor,
    zoomed_cam: torch.Tensor,
    boxes: torch.Tensor,
    image_hw: Tuple[int, int],
    *,
    eps: float = 1e-8,
) -> torch.Tensor:
    """
    M_zoom: a detached copy of ``cam`` whose crop region holds the zoomed CAM, resized to the
    region and min-max normalised per map.

    Args:
        cam: (B, C, h, w) original CAM, normalised to [0, 1].
        zoomed_cam: (B, C, h', w') CAM of the zoomed views.
        boxes: (B, 4) crop boxes in image pixels, on the CAM grid (from :func:`cam_crop_boxes`).
        image_hw: (H, W) of the original image.
        eps: guard of the min-max normalisation.

    Returns:
        m_zoom: (B, C, h, w), no gradient.
    """
    if cam.dim() != 4 or zoomed_cam.dim() != 4 or zoomed_cam.shape[:2] != cam.shape[:2]:
        raise ValueError(
            f"cam and zoomed_cam must have shapes (B, C, h, w) and (B, C, h', w'), "
            f"got {tuple(cam.shape)} and {tuple(zoomed_cam.shape)}"
        )
    if boxes.shape != (cam.shape[0], 4):
        raise ValueError(
            f"boxes must have shape (B, 4) = ({cam.shape[0]}, 4), got {tuple(boxes.shape)}"
        )
    height, width = cam.shape[2:]
    scale = boxes.new_tensor(
        [width / image_hw[1], height / image_hw[0], width / image_hw[1], height / image_hw[0]]
    )
    cells = torch.round(boxes.detach() * scale).long()
    limits = cells.new_tensor([width, height, width, height])
    cells = torch.minimum(cells.clamp(min=0), limits)
    m_zoom = cam.detach().clone()
    zoomed_cam = zoomed_cam.detach()
    for i, (x1, y1, x2, y2) in enumerate(cells.tolist()):
        if x2 <= x1 or y2 <= y1:
            raise ValueError(
                f"box {i} {boxes[i].tolist()} covers no cell of the {height}x{width} CAM"
            )
        region = F.interpolate(
            zoomed_cam[i : i + 1].to(cam.dtype),
            size=(y2 - y1, x2 - x1),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        m_zoom[i, :, y1:y2, x1:x2] = normalize_cam(region[0], eps=eps)
    return m_zoom


def background_map(m_zoom: torch.Tensor) -> torch.Tensor:
    """
    Args:
        m_zoom: (B, C, h, w) in [0, 1].

    Returns:
        m_bg: (B, C, h, w), ``1 - m_zoom``.
    """
    return 1 - m_zoom


def _batch_cosine(a: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    return F.cosine_similarity(a.flatten(1), b.flatten(1), dim=1, eps=eps).mean()


def cropcam_loss(
    logits_orig: torch.Tensor,
    logits_zoom: torch.Tensor,
    labels: torch.Tensor,
    cam: torch.Tensor,
    m_zoom: torch.Tensor,
    m_bg: torch.Tensor,
    *,
    lam: float = 0.9,
    l_pos: float = 0.9,
    l_neg: float = 0.1,
    eps: float = 1e-8,
) -> Dict[str, torch.Tensor]:
    """
    Args:
        logits_orig: (B, K) logits of the original images.
        logits_zoom: (B, K) logits of the zoomed views.
        labels: (B,) int64 class indices.
        cam: M, (B, ...) original CAMs (differentiable).
        m_zoom: (B, ...) pasted map from :func:`paste_back` (detached here).
        m_bg: (B, ...) background map from :func:`background_map` (detached here).
        lam: weight of classification vs. attention consistency (lambda_3).
        l_pos: weight of the pull toward M_zoom (lambda_1).
        l_neg: weight of the push from M_bg (lambda_2).
        eps: guard of the cosine similarity.

    Returns:
        {"loss_cropcam_cls": 2 * lam * mean CE, "loss_cropcam_att": 2 * (1 - lam) * attention
        term}; their sum is the CropCAM loss.
    """
    if logits_orig.dim() != 2 or logits_zoom.shape != logits_orig.shape:
        raise ValueError(
            f"logits_orig and logits_zoom must both have shape (B, K), "
            f"got {tuple(logits_orig.shape)} and {tuple(logits_zoom.shape)}"
        )
    if labels.shape != logits_orig.shape[:1] or labels.dtype != torch.int64:
        raise ValueError(
            f"labels must be int64 class indices of shape ({logits_orig.shape[0]},), "
            f"got dtype {labels.dtype} and shape {tuple(labels.shape)}"
        )
    if m_zoom.shape != cam.shape or m_bg.shape != cam.shape:
        raise ValueError(
            f"cam, m_zoom and m_bg must have the same shape, got {tuple(cam.shape)}, "
            f"{tuple(m_zoom.shape)} and {tuple(m_bg.shape)}"
        )
    ce = (F.cross_entropy(logits_orig, labels) + F.cross_entropy(logits_zoom, labels)) / 2
    cos_zoom = _batch_cosine(cam, m_zoom.detach(), eps)
    cos_bg = _batch_cosine(cam, m_bg.detach(), eps)
    attention = l_pos * (1 - cos_zoom) - l_neg * (1 - cos_bg) + 1
    return {"loss_cropcam_cls": 2 * lam * ce, "loss_cropcam_att": 2 * (1 - lam) * attention}


def use_zoomed_map(box: Sequence[float], image_hw: Tuple[int, int], nu: float = 0.3) -> bool:
    """
    Inference rule: use the pasted map when the crop covers less than ``nu`` of the image.

    Args:
        box: (x1, y1, x2, y2) crop box in image pixels (a (4,) tensor or a sequence).
        image_hw: (H, W).
        nu: area ratio threshold.

    Returns:
        whether M_zoom replaces the CAM.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return (x2 - x1) * (y2 - y1) / (image_hw[0] * image_hw[1]) < nu
