from . import backbone, meta_arch, roi_heads  # noqa: F401  (registration)
from .checkpoint import WSODCheckpointer
from .wsol_heads import WSOL_HEAD_REGISTRY, build_wsol_head
