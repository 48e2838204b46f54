"""Box heads of the WSOD ROI heads: the :class:`BoxHead` contract and VGG's fc6/fc7
(:class:`VGGFCHead`, with dropout, named so ImageNet weights load)."""
from typing import Callable, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling.roi_heads import ROI_BOX_HEAD_REGISTRY


class BoxHead(nn.Module):
    """The contract of a WSOD box head (registered in detectron2's ROI_BOX_HEAD_REGISTRY).

    - ``forward(pooled)``: pooled RoI features (R, D, P, P) -> box features (R, fc_dim);
    - ``output_shape``: ShapeSpec(channels=fc_dim);
    - :meth:`logits_and_cell_mean_grads`: what Grad-CAM needs of a classifier on top of the head
      (CASD's Inverted Attention); a head whose first layer is linear may compute it cheaper.
    """

    def logits_and_cell_mean_grads(
        self,
        pooled: torch.Tensor,
        classifier: Callable[[torch.Tensor], torch.Tensor],
        y: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            pooled: (R, D, P, P) pooled RoI features (not modified; no gradient flows into them).
            classifier: box features (R, fc_dim) -> logits (R, K).
            y: (R,) long, the class whose logit is differentiated, per RoI.

        Returns:
            logits (R, K) of ``classifier(self(pooled))``, detached, and
            d(sum_r logit[r, y_r]) / d pooled averaged over the P x P cells, (R, D, 1, 1).
            Default: the full input gradient.
        """
        x = pooled.detach().requires_grad_()
        logits = classifier(self(x))
        (grads,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), x)
        return logits.detach(), grads.mean(dim=(2, 3), keepdim=True)


@ROI_BOX_HEAD_REGISTRY.register()
class VGGFCHead(BoxHead):
    """Flatten the pooled RoI feature, then fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout.

    Input (R, D, P, P); output (R, fc_dim). fc6 and fc7 are named as VGG16's ImageNet classifier
    layers, which the WSOD meta-architecture loads into them.
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
        return self._after_fc6(self.fc6(x.flatten(1)))

    def _after_fc6(self, z):
        """The rest of the head from fc6's output z (R, fc_dim); z may be a leaf that requires
        grad (see :meth:`logits_and_cell_mean_grads`), hence no in-place ReLU."""
        x = self.dropout(F.relu(z))
        return self.dropout(self.relu(self.fc7(x)))

    def logits_and_cell_mean_grads(self, pooled, classifier, y):
        """:meth:`BoxHead.logits_and_cell_mean_grads`, the gradient stopped at fc6's output and
        taken across fc6 through its weight averaged over the cells (fc6 is linear): this skips
        the (R, D*P*P) input gradient, Inverted Attention's dearest product."""
        with torch.no_grad():
            z = self.fc6(pooled.flatten(1))
        z.requires_grad_()
        logits = classifier(self._after_fc6(z))
        (dz,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), z)
        cell_mean_weight = self.fc6.weight.detach().unflatten(1, pooled.shape[1:]).mean((2, 3))
        return logits.detach(), (dz @ cell_mean_weight)[:, :, None, None]

    @property
    def output_shape(self):
        return ShapeSpec(channels=self._output_size)
