"""Weakly supervised object detection: the R-CNN without RPN (``rcnn``), its ROI heads (MIL
heads, online refinement, CASD), pseudo labels, losses and test-time augmentation."""
from wsod_d2.modeling.wsod.box_head import BoxHead, VGGFCHead
from wsod_d2.modeling.wsod.casd_heads import CASDROIHeads
from wsod_d2.modeling.wsod.casd_rcnn import CASDRCNN
from wsod_d2.modeling.wsod.context_pooling import RingPooler
from wsod_d2.modeling.wsod.contextlocnet import ContextLocNet
from wsod_d2.modeling.wsod.mil import MIL_HEAD_REGISTRY, WSDDN, MILHead, build_mil_head
from wsod_d2.modeling.wsod.pseudo_labelers import PSEUDO_LABELER_REGISTRY
from wsod_d2.modeling.wsod.rcnn import WSODRCNN
from wsod_d2.modeling.wsod.refinement import RefinementROIHeads
from wsod_d2.modeling.wsod.roi_heads import WSODROIHeads
