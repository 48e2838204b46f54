from . import backbone, meta_arch, roi_heads  # noqa: F401  (registration)
from .checkpoint import WSODCheckpointer
