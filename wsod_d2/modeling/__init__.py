"""Models. Importing the package registers the backbones, the WSOD meta-architectures and ROI
heads (``wsod/``) and the WSOL classifier and heads (``wsol/``) in detectron2's registries."""
from wsod_d2.modeling import backbone, wsod, wsol  # noqa: F401  (registration)
from wsod_d2.modeling.checkpoint import WSODCheckpointer
