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
