"""Config keys both families read: datasets, input (proposals, views, photometric
augmentation), backbones, test, the optimizer."""
from detectron2.config import CfgNode as CN


def add_dataset_config(cfg):
    # Proposal boxes may exceed the image by this many pixels (then they are clipped); beyond it
    # the file's coordinate convention is probably wrong and loading fails, naming the image.
    cfg.DATASETS.PROPOSAL_BOUNDS_TOLERANCE = 1.0
    # Whether a class present only through "difficult" objects counts as an image label (VOC).
    cfg.DATASETS.LABELS_FROM_DIFFICULT = False
    # Worker processes for selective search when a dataset's proposals are generated on first use.
    cfg.DATASETS.PROPOSAL_WORKERS = 2
    # Proposal files (as written in PROPOSAL_FILES_*) used even though their statistics look like
    # a wrong coordinate convention (wsod_d2/data/proposals/conventions.py); loading others fails.
    cfg.DATASETS.PROPOSAL_FILES_ACCEPTED = ()
    # Read every image's header before training (existence, format, size vs the dataset dict).
    cfg.DATASETS.CHECK_IMAGE_FILES = True
    # COCO-format instances files, one per DATASETS.TRAIN name, registered under that name for
    # a box-supervised detector (GeneralizedRCNN), e.g. tools/export_pseudo_gt.py's pseudo
    # ground truth; $DETECTRON2_DATASETS is expanded. Empty: the names are registered datasets.
    cfg.DATASETS.PSEUDO_GT_FILES_TRAIN = ()


def add_input_config(cfg):
    """Proposal filtering, multi-view training (CASDRCNN) and photometric augmentation."""
    # Proposals with a side shorter than this (pixels of the original image) are dropped.
    cfg.INPUT.PROPOSAL_MIN_SIZE = 2.0
    # De-duplication: proposals equal after scaling by this factor and rounding are merged
    # (OICR's DEDUP_BOXES = 1/16, the feature stride of VGG16); 0 disables it.
    cfg.INPUT.PROPOSAL_DEDUP_SCALE = 0.0625

    cfg.INPUT.VIEWS = CN()
    # Training views per image: NUM_SCALES short sides drawn without replacement from
    # INPUT.MIN_SIZE_TRAIN, each also flipped when FLIP (CASD: 2 scales x flip = 4 views).
    # 0: one view per image, the plain mapper (INPUT.RANDOM_FLIP applies there).
    cfg.INPUT.VIEWS.NUM_SCALES = 0
    cfg.INPUT.VIEWS.FLIP = True
    # Proposals shared by all views: a uniformly random subset of this size, drawn after
    # PRECOMPUTED_PROPOSAL_TOPK_TRAIN (CASD: 800); 0 keeps them all.
    cfg.INPUT.VIEWS.NUM_PROPOSALS = 0

    # Photometric (colour) distortion of training images, CASD's "augmentation"
    # (wsod_d2/data/wsod/photometric.py).
    cfg.INPUT.PHOTOMETRIC = CN()
    cfg.INPUT.PHOTOMETRIC.ENABLED = False
    # "detectron2": detectron2's brightness, contrast, saturation factors (uint8 out); "ssd": the
    # released CASD's SSDAugmentation (added brightness, contrast, HSV saturation and hue; float32).
    cfg.INPUT.PHOTOMETRIC.STYLE = "detectron2"
    # Probability that each step of the distortion is applied (both styles; the release: 1/2).
    cfg.INPUT.PHOTOMETRIC.PROB = 0.5
    # "detectron2": range of the brightness factor.
    cfg.INPUT.PHOTOMETRIC.BRIGHTNESS = (0.875, 1.125)
    # "ssd": delta ~ U(-d, d) added to every channel, in pixel units (the release: 32).
    cfg.INPUT.PHOTOMETRIC.BRIGHTNESS_DELTA = 32.0
    # Range of the contrast factor ("detectron2": blend with the image mean; "ssd": multiply).
    cfg.INPUT.PHOTOMETRIC.CONTRAST = (0.5, 1.5)
    # Range of the saturation factor ("detectron2": blend with grayscale; "ssd": multiply HSV's S).
    cfg.INPUT.PHOTOMETRIC.SATURATION = (0.5, 1.5)
    # "ssd": delta ~ U(-d, d) added to HSV's hue, in degrees (the release: 18).
    cfg.INPUT.PHOTOMETRIC.HUE_DELTA = 18.0
    # Multi-view mapper: one distortion per scale, shared by its flipped view (the release), rather
    # than one per image shared by all views.
    cfg.INPUT.PHOTOMETRIC.PER_SCALE = False
    # First training iteration (0-based, detectron2's) with distorted images; 0: all. The release:
    # from its 1-based iteration 40000 (branch may30; 45000 on master), i.e. 39999 here.
    cfg.INPUT.PHOTOMETRIC.START_ITER = 0


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
    # Stage outputs returned (any of "conv1".."conv5", each after its last conv + ReLU); layer-wise
    # CASD reads several (e.g. conv3, conv4, conv5), the ROI heads read ROI_HEADS.IN_FEATURES.
    cfg.MODEL.VGG.OUT_FEATURES = ["conv5"]
    # ImageNet weights in MODEL.WEIGHTS are recognised by their tensor names (torchvision or
    # caffe): set PIXEL_MEAN/STD and INPUT.FORMAT to match (caffe: BGR, 0-255, std 1).

    cfg.MODEL.RESNET_WSOL = CN()
    # torchvision ResNet depth (18, 34, 50, 101, 152).
    cfg.MODEL.RESNET_WSOL.DEPTH = 50
    # Stride of layer3: 1 is wsolevaluation's "large feature map" (28 x 28 at 224), 2 torchvision's.
    cfg.MODEL.RESNET_WSOL.LAYER3_STRIDE = 2
    # Stride of layer4 (wsolevaluation keeps 1).
    cfg.MODEL.RESNET_WSOL.LAYER4_STRIDE = 1

    cfg.MODEL.VIT = CN()
    # timm model built with pretrained=False; the keys below override its architecture.
    cfg.MODEL.VIT.ARCH = "deit_small_patch16_224"
    # Input side (views must be this size) and patch side; the token grid is their ratio.
    cfg.MODEL.VIT.IMG_SIZE = 224
    cfg.MODEL.VIT.PATCH_SIZE = 16
    # Token dimension, number of blocks and attention heads (DeiT-S: 384, 12, 6).
    cfg.MODEL.VIT.EMBED_DIM = 384
    cfg.MODEL.VIT.DEPTH = 12
    cfg.MODEL.VIT.NUM_HEADS = 6
    # Stochastic depth rate (TS-CAM trains DeiT-S with 0.1).
    cfg.MODEL.VIT.DROP_PATH_RATE = 0.1


def add_test_config(cfg):
    # Evaluators run on each test set: any of "voc", "coco", "corloc". An empty list picks by the
    # dataset's evaluator_type (pascal_voc -> voc + corloc, coco -> coco + corloc).
    cfg.TEST.EVALUATORS = []
    # CorLoc: IoU of the top box of a class with a GT box of it that counts as a hit.
    cfg.TEST.CORLOC_IOU = 0.5
    # CorLoc: whether an image whose objects of a class are all "difficult" counts for that class
    # (True in the public WSOD code that reported CorLoc: wetectron, pcl.pytorch).
    cfg.TEST.CORLOC_COUNT_DIFFICULT_ONLY = True


def add_solver_config(cfg):
    """The one optimizer builder's keys (wsod_d2.solver.build_optimizer)."""
    # "SGD" (with SOLVER.MOMENTUM / NESTEROV), "ADAM" (for small networks trained from random
    # init, where it converges far faster than SGD) or "ADAMW" (TS-CAM, SCM).
    cfg.SOLVER.OPTIMIZER = "SGD"
    # Parameters whose names start with one of these train at HEAD_LR_FACTOR x SOLVER.BASE_LR
    # (wsolevaluation: the new layers, and ResNet's layer4, at 10x). Empty: none.
    cfg.SOLVER.HEAD_LR_PREFIXES = []
    cfg.SOLVER.HEAD_LR_FACTOR = 1.0
    # Adam / AdamW's (beta1, beta2) and epsilon.
    cfg.SOLVER.ADAM_BETAS = [0.9, 0.999]
    cfg.SOLVER.ADAM_EPS = 1e-8
