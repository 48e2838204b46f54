"""VGG's fc6/fc7 as a detectron2 box head (with dropout, named so ImageNet weights load)."""
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY


@ROI_BOX_HEAD_REGISTRY.register()
class VGGFCHead(nn.Module):
    """Flatten the pooled RoI feature, then fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout.

    Input (R, D, P, P); output (R, fc_dim).
    """

    @configurable
    def __init__(self, input_shape: ShapeSpec, *, fc_dim: int, dropout: float):
        super().__init__()
        in_dim = input_shape.channels * input_shape.height * input_shape.width
        self.fc6 = nn.Linear(in_dim, fc_dim)
        self.fc7 = nn.Linear(fc_dim, fc_dim)
        for fc in (self.fc6, self.fc7):
            # torchvision's VGG classifier init.
            nn.init.normal_(fc.weight, std=0.01)
            nn.init.zeros_(fc.bias)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout)
        self._output_size = fc_dim

    @classmethod
    def from_config(cls, cfg, input_shape):
        return {
            "input_shape": input_shape,
            "fc_dim": cfg.MODEL.ROI_BOX_HEAD.FC_DIM,
            "dropout": cfg.MODEL.ROI_BOX_HEAD.DROPOUT,
        }

    def forward(self, x):
        return self.after_fc6(self.fc6(x.flatten(1)))

    def after_fc6(self, z):
        """The rest of the head from fc6's output z (R, fc_dim); z may be a leaf that requires
        grad (CASD's Inverted Attention differentiates from there), hence no in-place ReLU."""
        x = self.dropout(F.relu(z))
        return self.dropout(self.relu(self.fc7(x)))

    @property
    def output_shape(self):
        return ShapeSpec(channels=self._output_size)
