"""Weakly supervised object localization and multi-label classification: the classifier with
class maps (``classifier``), its heads (CAM, CSRA, TS-CAM) and modules (ADL, SCM, CropCAM)."""
from wsod_d2.modeling.wsol.classifier import WSOLClassifier
from wsod_d2.modeling.wsol.heads import WSOL_HEAD_REGISTRY, WSOLHead, build_wsol_head
