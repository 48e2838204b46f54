import math

import pytest
import torch

from wsod_d2.modeling.wsol.cropcam import (
    background_map,
    cam_crop_box,
    cam_crop_boxes,
    crop_and_zoom,
    cropcam_loss,
    normalize_cam,
    paste_back,
    use_zoomed_map,
)


def _cam(size, cells):
    cam = torch.zeros(size)
    for (row, col), value in cells.items():
        cam[row, col] = value
    return cam


def test_crop_box_union_squared_towards_top():
    # Components: rows 1-2 x cols 1-2, and (4, 5); (7, 7) sits exactly at tau * max (strict
    # threshold: out), (0, 7) below it. Union cols [1, 6), rows [1, 5): 5 x 4 -> side 5, the odd
    # extra row goes on top: rows [0, 5). Stride 64 / 8 = 8.
    cells = {(1, 1): 1.0, (1, 2): 1.0, (2, 1): 1.0, (2, 2): 1.0, (4, 5): 0.8}
    cells.update({(7, 7): 0.5, (0, 7): 0.3})
    box = cam_crop_box(_cam((8, 8), cells), tau=0.5, image_hw=(64, 64))
    torch.testing.assert_close(box, torch.tensor([8.0, 0.0, 48.0, 40.0]))


def test_crop_box_shifted_inside_at_right_and_left_edges():
    # cols [6, 8), rows [3, 7): side 4; centred cols [5, 9) shift left to [4, 8).
    right = _cam((8, 8), {(3, 6): 1.0, (3, 7): 1.0, (6, 7): 1.0})
    torch.testing.assert_close(
        cam_crop_box(right, tau=0.5, image_hw=(64, 64)), torch.tensor([32.0, 24.0, 64.0, 56.0])
    )
    # cols [0, 3), row 0: side 3; centred rows [-1, 2) shift down to [0, 3).
    top = _cam((8, 8), {(0, 0): 1.0, (0, 2): 1.0})
    torch.testing.assert_close(
        cam_crop_box(top, tau=0.5, image_hw=(64, 64)), torch.tensor([0.0, 0.0, 24.0, 24.0])
    )


def test_crop_box_clipped_when_longer_than_cam_and_anisotropic_stride():
    # 2 x 6 CAM, cols [0, 5): side 5 > 2 rows, so rows are clipped to [0, 2).
    wide = _cam((2, 6), {(0, c): 1.0 for c in range(5)})
    torch.testing.assert_close(
        cam_crop_box(wide, tau=0.5, image_hw=(16, 48)), torch.tensor([0.0, 0.0, 40.0, 16.0])
    )
    # Stride 4 along x, 8 along y: cells [1, 1, 3, 3] -> pixels [4, 8, 12, 24].
    aniso = _cam((4, 4), {(1, 1): 1.0, (2, 2): 1.0})
    torch.testing.assert_close(
        cam_crop_box(aniso, tau=0.5, image_hw=(32, 16)), torch.tensor([4.0, 8.0, 12.0, 24.0])
    )


def test_crop_box_normalises_and_handles_empty_maps():
    # Values -2..2: normalised (v + 2) / 4, so tau = 0.5 keeps v > 0 only: the cell (2, 3).
    signed = torch.full((4, 4), -2.0)
    signed[2, 3], signed[0, 0] = 2.0, 0.0
    torch.testing.assert_close(
        cam_crop_box(signed, tau=0.5, image_hw=(4, 4)), torch.tensor([3.0, 2.0, 4.0, 3.0])
    )
    flat = torch.full((3, 5), 0.7)
    torch.testing.assert_close(
        cam_crop_box(flat, tau=0.2, image_hw=(30, 50)), torch.tensor([0.0, 0.0, 50.0, 30.0])
    )
    batch = torch.stack([signed, torch.zeros(4, 4)])
    boxes = cam_crop_boxes(batch, tau=0.5, image_hw=(4, 4))
    torch.testing.assert_close(boxes, torch.tensor([[3.0, 2.0, 4.0, 3.0], [0.0, 0.0, 4.0, 4.0]]))
    with pytest.raises(ValueError, match="tau"):
        cam_crop_box(flat, tau=1.0, image_hw=(30, 50))
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        cam_crop_box(batch, tau=0.5, image_hw=(4, 4))


def test_crop_and_zoom():
    images = torch.randn(1, 3, 8, 8)
    same = crop_and_zoom(images, torch.tensor([[2.0, 1.0, 6.0, 5.0]]), 4)
    torch.testing.assert_close(same, images[:, :, 1:5, 2:6])
    # Ramp I(x) = x; box [0, 2) zoomed 2x samples x = -0.25 (clamped to 0), 0.25, 0.75, 1.25.
    ramp = torch.arange(8.0).expand(2, 3, 8, 8).clone()
    ramp[1] += 10
    zoomed = crop_and_zoom(ramp, torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 2.0, 2.0]]), 4)
    assert zoomed.shape == (2, 3, 4, 4)
    row = torch.tensor([0.0, 0.25, 0.75, 1.25])
    torch.testing.assert_close(zoomed[0], row.expand(3, 4, 4))
    torch.testing.assert_close(zoomed[1], (row + 10).expand(3, 4, 4))
    with pytest.raises(ValueError, match="boxes"):
        crop_and_zoom(images, torch.zeros(2, 4), 4)


def test_paste_back_places_normalised_zoomed_map_in_crop_region():
    cam = (torch.arange(16.0) / 15).view(1, 1, 4, 4).requires_grad_(True)
    zoomed = torch.tensor([[2.0, 4.0], [6.0, 10.0]]).view(1, 1, 2, 2)
    box = torch.tensor([[8.0, 16.0, 24.0, 32.0]])  # cells x [1, 3), y [2, 4) at stride 8
    m_zoom = paste_back(cam, zoomed, box, (32, 32))
    expected = cam.detach().clone()
    expected[0, 0, 2:4, 1:3] = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    torch.testing.assert_close(m_zoom, expected)
    assert not m_zoom.requires_grad
    torch.testing.assert_close(background_map(m_zoom), 1 - expected)


def test_paste_back_resizes_into_region():
    cam = torch.full((1, 2, 4, 4), 0.3)
    zoomed = torch.zeros(1, 2, 4, 4)
    zoomed[:, :, :, 2:] = 5.0  # left half low, right half high
    m_zoom = paste_back(cam, zoomed, torch.tensor([[0.0, 0.0, 2.0, 2.0]]), (4, 4))
    expected = torch.full((1, 2, 4, 4), 0.3)
    expected[:, :, :2, :2] = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    torch.testing.assert_close(m_zoom, expected)
    with pytest.raises(ValueError, match="covers no cell"):
        paste_back(cam, zoomed, torch.tensor([[1.0, 1.0, 1.2, 3.0]]), (4, 4))


def test_cropcam_loss_by_hand():
    cam = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    cam.requires_grad_(True)
    m_zoom = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]).view(2, 1, 2, 2)
    m_zoom.requires_grad_(True)
    m_bg = background_map(m_zoom)
    logits_orig = torch.zeros(2, 2)
    logits_zoom = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    labels = torch.tensor([0, 1])
    losses = cropcam_loss(
        logits_orig, logits_zoom, labels, cam, m_zoom, m_bg, lam=0.25, l_pos=2.0, l_neg=0.5
    )
    ce_orig = math.log(2.0)
    ce_zoom = (math.log(4.0 / 3.0) + math.log(4.0)) / 2
    cos_zoom = (1 / math.sqrt(2) + 1.0) / 2
    cos_bg = (1 / math.sqrt(6) + 0.0) / 2
    attention = 2.0 * (1 - cos_zoom) - 0.5 * (1 - cos_bg) + 1
    assert set(losses) == {"loss_cropcam_cls", "loss_cropcam_att"}
    torch.testing.assert_close(
        losses["loss_cropcam_cls"], torch.tensor(2 * 0.25 * (ce_orig + ce_zoom) / 2)
    )
    torch.testing.assert_close(losses["loss_cropcam_att"], torch.tensor(2 * 0.75 * attention))
    sum(losses.values()).backward()
    assert m_zoom.grad is None
    assert cam.grad.abs().sum() > 0


def test_cropcam_loss_errors():
    cam = torch.rand(2, 1, 3, 3)
    logits = torch.zeros(2, 4)
    with pytest.raises(ValueError, match="labels"):
        cropcam_loss(logits, logits, torch.zeros(2), cam, cam, cam)
    with pytest.raises(ValueError, match="same shape"):
        cropcam_loss(logits, logits, torch.zeros(2, dtype=torch.long), cam, cam[:, :, :2], cam)


def test_use_zoomed_map():
    box = torch.tensor([8.0, 0.0, 48.0, 40.0])  # 1600 / 4096 = 0.39
    assert not use_zoomed_map(box, (64, 64), 0.3)
    assert use_zoomed_map(box, (64, 64), 0.4)
    assert not use_zoomed_map([0, 0, 32, 32], (64, 64), 0.25)  # equal ratio: keep the CAM


def test_pipeline_shapes():
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    cam = normalize_cam(torch.rand(2, 1, 4, 4))
    boxes = cam_crop_boxes(cam[:, 0], tau=0.15, image_hw=(32, 32))
    views = crop_and_zoom(images, boxes, 32)
    zoomed_cam = torch.rand(2, 1, 4, 4)
    m_zoom = paste_back(cam, zoomed_cam, boxes, (32, 32))
    assert views.shape == (2, 3, 32, 32) and m_zoom.shape == cam.shape
    assert 0 <= float(m_zoom.min()) and float(m_zoom.max()) <= 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(0)
    cam = normalize_cam(torch.rand(2, 1, 6, 6))
    images = torch.randn(2, 3, 48, 48)
    boxes = cam_crop_boxes(cam[:, 0], tau=0.3, image_hw=(48, 48))
    cuda_boxes = cam_crop_boxes(cam[:, 0].cuda(), tau=0.3, image_hw=(48, 48))
    torch.testing.assert_close(cuda_boxes.cpu(), boxes)
    views = crop_and_zoom(images, boxes, 48)
    torch.testing.assert_close(crop_and_zoom(images.cuda(), cuda_boxes, 48).cpu(), views)
    zoomed = torch.rand(2, 1, 6, 6)
    m_zoom = paste_back(cam, zoomed, boxes, (48, 48))
    torch.testing.assert_close(
        paste_back(cam.cuda(), zoomed.cuda(), cuda_boxes, (48, 48)).cpu(), m_zoom
    )
