"""wsod_d2's config keys: ``add_wsod_config(cfg)`` = one ``add_*_config`` per concern."""
from detectron2.config import CfgNode as CN


def add_wsod_config(cfg):
    """Add every wsod_d2 key to a detectron2 config, in place."""
    add_dataset_config(cfg)
    add_input_config(cfg)
    add_backbone_config(cfg)
    add_box_head_config(cfg)
    add_mil_config(cfg)
    add_test_config(cfg)
    add_detection_heads_config(cfg)


def add_dataset_config(cfg):
    # Proposal boxes may exceed the image by this many pixels (then they are clipped); beyond it
    # the file's coordinate convention is probably wrong and loading fails, naming the image.
    cfg.DATASETS.PROPOSAL_BOUNDS_TOLERANCE = 1.0
    # Whether a class present only through "difficult" objects counts as an image label (VOC).
    cfg.DATASETS.LABELS_FROM_DIFFICULT = False
    # Worker processes for selective search when a dataset's proposals are generated on first use.
    cfg.DATASETS.PROPOSAL_WORKERS = 2


def add_input_config(cfg):
    # Proposals with a side shorter than this (pixels of the original image) are dropped.
    cfg.INPUT.PROPOSAL_MIN_SIZE = 2.0
    # De-duplication: proposals equal after scaling by this factor and rounding are merged
    # (OICR's DEDUP_BOXES = 1/16, the feature stride of VGG16); 0 disables it.
    cfg.INPUT.PROPOSAL_DEDUP_SCALE = 0.0625


def add_backbone_config(cfg):
    cfg.MODEL.VGG = CN()
    # Output channels of each of the 5 conv stages (VGG16: 64, 128, 256, 512, 512).
    cfg.MODEL.VGG.CHANNELS = [64, 128, 256, 512, 512]
    # 3x3 convs per stage (VGG16: 2, 2, 3, 3, 3).
    cfg.MODEL.VGG.CONVS_PER_STAGE = [2, 2, 3, 3, 3]
    # Dilation of the conv5 stage. The WSOD variant drops pool4 and dilates conv5 by 2 (stride 8).
    cfg.MODEL.VGG.CONV5_DILATION = 2
    # Whether the max-pool after conv4 is kept (stride 16, as in CASD's released code).
    cfg.MODEL.VGG.POOL4 = False
    # Normalization after each conv ("" for none as in VGG16, or detectron2's "BN", "GN", ...).
    cfg.MODEL.VGG.NORM = ""
    # Format of the ImageNet weights in MODEL.WEIGHTS: "torchvision" (RGB, /255, std-normalised)
    # or "caffe" (BGR, 0-255, mean-subtracted). Set PIXEL_MEAN/STD and INPUT.FORMAT to match.
    cfg.MODEL.VGG.WEIGHTS_FORMAT = "torchvision"


def add_box_head_config(cfg):
    # Dropout after fc6 and fc7 (VGG16's classifier uses 0.5).
    cfg.MODEL.ROI_BOX_HEAD.DROPOUT = 0.5


def add_mil_config(cfg):
    cfg.MODEL.MIL = CN()
    # Multiple-instance head from MIL_HEAD_REGISTRY ("WSDDN").
    cfg.MODEL.MIL.NAME = "WSDDN"
    # WSDDN: temperature of the detection softmax over RoIs (the original code used 2).
    cfg.MODEL.MIL.DET_TEMPERATURE = 1.0
    # WSDDN: image scores phi are clamped to [eps, 1 - eps] before the BCE.
    cfg.MODEL.MIL.EPS = 1e-6
    # WSDDN: "mean" (over classes, trains better) or "sum" of the per-class BCE terms.
    cfg.MODEL.MIL.LOSS_REDUCTION = "mean"
    # Weight of the MIL loss in the total.
    cfg.MODEL.MIL.LOSS_WEIGHT = 1.0


def add_test_config(cfg):
    # Evaluators run on each test set: any of "voc", "coco", "corloc". An empty list picks by the
    # dataset's evaluator_type (pascal_voc -> voc + corloc, coco -> coco + corloc).
    cfg.TEST.EVALUATORS = []
    # CorLoc: IoU of the top box of a class with a GT box of it that counts as a hit.
    cfg.TEST.CORLOC_IOU = 0.5
    # CorLoc: whether an image whose objects of a class are all "difficult" counts for that class
    # (True in the public WSOD code that reported CorLoc: wetectron, pcl.pytorch).
    cfg.TEST.CORLOC_COUNT_DIFFICULT_ONLY = True


def add_detection_heads_config(cfg):
    # ContextLocNet (MODEL.MIL.NAME "ContextLocNet"): the context ring is the box scaled by this
    # factor minus the box; the frame ring is the box minus the box scaled by its inverse.
    cfg.MODEL.MIL.CONTEXT_SCALE = 1.8
    # ContextLocNet: margin of the hinge loss max(0, margin - y' score) on image scores.
    cfg.MODEL.MIL.HINGE_MARGIN = 1.0

    # Online refinement stages after the MIL head (ROI_HEADS.NAME "RefinementROIHeads").
    cfg.MODEL.REFINEMENT = CN()
    # K, the number of refinement stages; stage k is supervised by stage k-1's scores.
    cfg.MODEL.REFINEMENT.NUM_STAGES = 3
    # Pseudo labeller from PSEUDO_LABELER_REGISTRY: "OICR", "PCL" or "MIST".
    cfg.MODEL.REFINEMENT.PSEUDO_LABELER = "OICR"
    # Multiplier of stage 1's losses (3 in pcl.pytorch's OICR recipe and in wetectron).
    cfg.MODEL.REFINEMENT.FIRST_STAGE_LOSS_WEIGHT = 1.0
    # RoIs whose max IoU with a pseudo-GT is >= this take its class (foreground).
    cfg.MODEL.REFINEMENT.FG_IOU = 0.5
    # RoIs whose max IoU with every pseudo-GT is below this are ignored (weight 0); between the
    # two thresholds they are background. 0 disables the ignore band (original OICR, wetectron).
    cfg.MODEL.REFINEMENT.BG_IOU = 0.1
    # PCL: IoU above which two candidate proposals are linked in the cluster graph.
    cfg.MODEL.REFINEMENT.PCL_GRAPH_IOU = 0.4
    # PCL: at most this many proposal clusters (centres) per positive class.
    cfg.MODEL.REFINEMENT.PCL_MAX_CLUSTERS = 5
    # PCL: k of the 1-D k-means on a class's scores that picks the candidate proposals.
    cfg.MODEL.REFINEMENT.PCL_KMEANS_K = 3
    # PCL: Lloyd iterations of that k-means.
    cfg.MODEL.REFINEMENT.PCL_KMEANS_ITERS = 10
    # MIST: fraction p of the proposals, by score, that are pseudo-GT candidates of a class.
    cfg.MODEL.REFINEMENT.MIST_TOP_RATIO = 0.15
    # MIST: a candidate is dropped when its IoU with a higher-ranked kept one is >= this.
    cfg.MODEL.REFINEMENT.MIST_NMS_IOU = 0.2
    # MIST: compare each candidate with every higher-ranked candidate, kept or not (wetectron's
    # code) instead of with the kept ones only (the paper's greedy NMS).
    cfg.MODEL.REFINEMENT.MIST_COMPARE_ALL_HIGHER_RANKED = False
    # Whether each stage also regresses class-specific boxes towards its pseudo-GTs (+Reg); the
    # deltas use MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS and the loss MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA.
    cfg.MODEL.REFINEMENT.BOX_REG = False
    # Weight of each stage's box-regression loss relative to its classification loss.
    cfg.MODEL.REFINEMENT.BOX_REG_LOSS_WEIGHT = 1.0
    # Whether the test scores average the MIL head's RoI scores with the stages' softmaxes.
    cfg.MODEL.REFINEMENT.TEST_INCLUDE_MIL = False
