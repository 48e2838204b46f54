"""The WSOL backbones: DeiT / ViT (timm's numbers, TS-CAM's attention map) and ResNet strides."""

import pytest
import torch
from detectron2.layers import ShapeSpec

from wsod_d2.modeling.backbone.deit import ViTWSOL
from wsod_d2.modeling.backbone.resnet import ResNetWSOL

TINY_VIT = dict(
    arch="deit_small_patch16_224",
    img_size=32,
    patch_size=8,
    embed_dim=24,
    depth=2,
    num_heads=2,
    drop_path_rate=0.0,
)


def test_vit_backbone_matches_timm_and_attention_hooks():
    torch.manual_seed(0)
    backbone = ViTWSOL(**TINY_VIT).eval()
    x = torch.randn(2, 3, 32, 32)
    captured = []
    for block in backbone.vit.blocks:
        block.attn.fused_attn = (
            False  # timm's explicit path, whose softmax weights go through attn_drop
        )
        block.attn.attn_drop.register_forward_hook(lambda m, i, o: captured.append(o))
    with torch.no_grad():
        tokens = backbone.vit.forward_features(x)
        timm_weights, captured[:] = list(captured), []
        ours = backbone(x)
    assert ours["patch_tokens"].shape == (2, 24, 4, 4)
    torch.testing.assert_close(
        ours["patch_tokens"], tokens[:, 1:].transpose(1, 2).reshape(2, 24, 4, 4)
    )
    # TS-CAM's map: class-token row, mean over heads, sum over layers, patches only.
    expected = sum(w.mean(dim=1)[:, 0, 1:] for w in timm_weights).reshape(2, 4, 4)
    torch.testing.assert_close(ours["cls_attention"], expected)
    with pytest.raises(ValueError, match="ViT input must be 32x32"):
        backbone(torch.randn(1, 3, 48, 48))


def test_resnet_strides_and_channels():
    x = torch.randn(1, 3, 64, 64)
    r18 = ResNetWSOL(depth=18, layer3_stride=1, layer4_stride=1).eval()
    assert r18(x)["res5"].shape == (1, 512, 8, 8) and r18.output_shape()["res5"].stride == 8
    r18s = ResNetWSOL(depth=18, layer3_stride=2, layer4_stride=2).eval()
    assert r18s(x)["res5"].shape == (1, 512, 2, 2) and r18s.output_shape()["res5"].stride == 32
    r50 = ResNetWSOL(depth=50, layer3_stride=2, layer4_stride=1)
    assert r50.output_shape()["res5"] == ShapeSpec(channels=2048, stride=16)
    assert r50.layer3[0].conv2.stride == (2, 2) and r50.layer4[0].downsample[0].stride == (1, 1)
    with pytest.raises(ValueError, match="DEPTH must be one of"):
        ResNetWSOL(depth=42, layer3_stride=1, layer4_stride=1)
