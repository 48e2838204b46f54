"""DeiT / ViT backbones for TS-CAM and SCM, built with timm (``pretrained=False``).

Besides the patch tokens, laid out as a map, the backbone returns the attention map of TS-CAM:
the attention of the class token to every patch, averaged over heads and summed over layers.
timm's fused attention never exposes its weights, so every block is run here with the block's
own modules and the attention computed explicitly (same numbers as timm's forward).
DeiT / timm ImageNet files load by name through :meth:`ViTWSOL.imagenet_state_dict`.
"""

from typing import Dict, Optional, Tuple

import timm
import torch
from detectron2.modeling import BACKBONE_REGISTRY
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Attention, Block, VisionTransformer

from wsod_d2.modeling.backbone.imagenet import ImageNetBackbone

__all__ = ["PATCH_TOKENS", "CLS_ATTENTION", "ViTWSOL", "build_vit_wsol_backbone"]

PATCH_TOKENS = "patch_tokens"
CLS_ATTENTION = "cls_attention"
_PREFIX = "vit."
_CLASSIFIER_KEYS = ("head.", "head_dist.")


def _attention(attn: Attention, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """timm's Attention.forward, also returning the class token's attention row (B, heads, N)."""
    batch, num, dim = x.shape
    qkv = attn.qkv(x).reshape(batch, num, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    weights = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (attn.attn_drop(weights) @ v).transpose(1, 2).reshape(batch, num, dim)
    return attn.proj_drop(attn.proj(out)), weights[:, :, 0]


def _block(block: Block, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """timm's Block.forward with :func:`_attention`."""
    out, cls_row = _attention(block.attn, block.norm1(x))
    x = x + block.drop_path1(block.ls1(out))
    x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
    return x, cls_row


class ViTWSOL(ImageNetBackbone):
    """
    Output: {"patch_tokens": (N, D, g, g) final-norm patch tokens, "cls_attention": (N, g, g)},
    g = img_size / patch_size. Inputs must be img_size x img_size.
    """

    imagenet_architecture = "DeiT / ViT"

    def __init__(
        self,
        *,
        arch: str,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        drop_path_rate: float,
    ):
        """
        Args:
            arch: timm model name, e.g. "deit_small_patch16_224"; the other arguments override its
                defaults (DeiT-S: patch 16, dim 384, depth 12, 6 heads).
        """
        super().__init__()
        if img_size % patch_size:
            raise ValueError(
                f"MODEL.VIT.IMG_SIZE ({img_size}) must be a multiple of MODEL.VIT.PATCH_SIZE "
                f"({patch_size})"
            )
        self.vit = timm.create_model(
            arch,
            pretrained=False,
            num_classes=0,
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            drop_path_rate=drop_path_rate,
        )
        if not isinstance(self.vit, VisionTransformer) or self.vit.cls_token is None:
            raise ValueError(f"MODEL.VIT.ARCH {arch!r} is not a timm ViT with a class token")
        for block in self.vit.blocks:
            if type(block) is not Block or type(block.attn) is not Attention:
                raise ValueError(
                    f"MODEL.VIT.ARCH {arch!r}: block {type(block).__name__} is not timm's plain "
                    "ViT Block, whose attention this backbone reads"
                )
        self.img_size = img_size
        self.grid_size = img_size // patch_size
        self._out_features = [PATCH_TOKENS]
        self._out_feature_channels = {PATCH_TOKENS: embed_dim}
        self._out_feature_strides = {PATCH_TOKENS: patch_size}

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            raise ValueError(
                f"ViT input must be {self.img_size}x{self.img_size} (MODEL.VIT.IMG_SIZE), got "
                f"{tuple(x.shape[-2:])}; set INPUT.WSOL sizes to match"
            )
        vit = self.vit
        x = vit.norm_pre(vit.patch_drop(vit._pos_embed(vit.patch_embed(x))))
        attention = 0
        for block in vit.blocks:
            x, cls_row = _block(block, x)
            attention = attention + cls_row.mean(dim=1)
        x = vit.norm(x)
        prefix, g = vit.num_prefix_tokens, self.grid_size
        patches = x[:, prefix:].transpose(1, 2).reshape(x.shape[0], -1, g, g)
        return {PATCH_TOKENS: patches, CLS_ATTENTION: attention[:, prefix:].reshape(-1, g, g)}

    def imagenet_state_dict(
        self, state: Dict[str, torch.Tensor]
    ) -> Optional[Dict[str, torch.Tensor]]:
        """
        A DeiT / timm ViT ImageNet state dict with this backbone's names (classifier heads left
        out, position embeddings resampled to this grid), or None if ``state`` is not one.
        """
        if "cls_token" not in state or "blocks.0.attn.qkv.weight" not in state:
            return None
        out = {_PREFIX + k: v for k, v in state.items() if not k.startswith(_CLASSIFIER_KEYS)}
        pos = state.get("pos_embed")
        if pos is not None and pos.shape != self.vit.pos_embed.shape:
            out[_PREFIX + "pos_embed"] = resample_abs_pos_embed(
                pos,
                new_size=(self.grid_size, self.grid_size),
                num_prefix_tokens=self.vit.num_prefix_tokens,
            )
        return out


@BACKBONE_REGISTRY.register()
def build_vit_wsol_backbone(cfg, input_shape):
    return ViTWSOL(
        arch=cfg.MODEL.VIT.ARCH,
        img_size=cfg.MODEL.VIT.IMG_SIZE,
        patch_size=cfg.MODEL.VIT.PATCH_SIZE,
        embed_dim=cfg.MODEL.VIT.EMBED_DIM,
        depth=cfg.MODEL.VIT.DEPTH,
        num_heads=cfg.MODEL.VIT.NUM_HEADS,
        drop_path_rate=cfg.MODEL.VIT.DROP_PATH_RATE,
    )
