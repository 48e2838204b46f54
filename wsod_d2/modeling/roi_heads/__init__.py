from .box_head import VGGFCHead
from .mil import MIL_HEAD_REGISTRY, WSDDN, build_mil_head
from .wsod_roi_heads import WSODROIHeads
from .context_pooling import RingPooler
from .contextlocnet import ContextLocNet
from .refinement import PSEUDO_LABELER_REGISTRY, RefinementROIHeads
from .casd_heads import CASDROIHeads
