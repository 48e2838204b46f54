"""WSOL heads: hand-computed CAMs, TS-CAM's coupled maps, CSRA's maps, the head contract."""

import pytest
import torch

from wsod_d2.modeling.wsol.heads import CAMHead, CSRAHead, TSCAMHead, WSOLHead


def test_cam_head_hand_computed():
    head = CAMHead(in_feature="f", in_channels=2, conv_dims=[], num_classes=2)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.5]]))
        head.fc.bias.copy_(torch.tensor([0.5, -1.0]))
    f = torch.tensor([[[[1.0, 0.0], [2.0, 4.0]], [[0.0, 1.0], [1.0, -1.0]]]])  # (1, 2, 2, 2)
    out = head({"f": f})
    cam0 = torch.tensor([[[1.0, 2.0], [4.0, 2.0]]])  # 1 * f0 + 2 * f1
    cam1 = torch.tensor([[[-1.0, 0.5], [-1.5, -4.5]]])  # -f0 + 0.5 f1
    torch.testing.assert_close(head.class_maps(out, torch.tensor([0])), cam0)
    torch.testing.assert_close(head.class_maps(out, torch.tensor([1])), cam1)
    # logit = spatial mean of the CAM + bias
    torch.testing.assert_close(out["logits"], torch.tensor([[2.25 + 0.5, -1.625 - 1.0]]))
    with pytest.raises(KeyError, match="IN_FEATURE 'g'"):
        CAMHead(in_feature="g", in_channels=2, conv_dims=[], num_classes=2)({"f": f})


def test_tscam_and_csra_heads():
    torch.manual_seed(0)
    tokens, attention = torch.randn(2, 4, 3, 3), torch.rand(2, 3, 3)
    head = TSCAMHead(in_feature="patch_tokens", in_channels=4, num_classes=5)
    out = head({"patch_tokens": tokens, "cls_attention": attention})
    semantic = head.conv(tokens)
    torch.testing.assert_close(out["logits"], semantic.mean(dim=(2, 3)))
    maps = head.class_maps(out, torch.tensor([3, 1]))
    torch.testing.assert_close(
        maps, torch.stack([attention[0] * semantic[0, 3], attention[1] * semantic[1, 1]])
    )
    with pytest.raises(KeyError, match="cls_attention"):
        head({"patch_tokens": tokens})
    csra = CSRAHead(in_feature="res5", in_channels=4, num_classes=5, num_heads=2, lam=0.1)
    out = csra({"res5": tokens})
    torch.testing.assert_close(out["logits"], csra.csra(tokens))
    full = csra.csra.forward_maps(tokens)
    torch.testing.assert_close(
        csra.class_maps(out, torch.tensor([4, 0])), torch.stack([full[0, 4], full[1, 0]])
    )


def test_semantic_map_contract():
    assert not WSOLHead.has_semantic_map and not CAMHead.has_semantic_map
    assert not CSRAHead.has_semantic_map and TSCAMHead.has_semantic_map


def test_a_head_without_class_maps_is_refused_at_construction():
    class NoMaps(WSOLHead):
        def forward(self, features):
            return {}

    with pytest.raises(TypeError, match="class_maps"):
        NoMaps()
