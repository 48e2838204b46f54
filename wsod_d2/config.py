"""wsod_d2's config keys: ``add_wsod_config(cfg)`` = one ``add_*_config`` per concern."""
from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg


def get_wsod_cfg(config_file=None, opts=(), freeze=True):
    """detectron2's defaults + wsod_d2's keys, then ``config_file`` and ``KEY VALUE`` ``opts``."""
    cfg = get_cfg()
    add_wsod_config(cfg)
    if config_file:
        cfg.merge_from_file(config_file)
    cfg.merge_from_list(list(opts))
    if freeze:
        cfg.freeze()
    return cfg


def add_wsod_config(cfg):
    """Add every wsod_d2 key to a detectron2 config, in place."""
    add_dataset_config(cfg)
    add_input_config(cfg)
    add_backbone_config(cfg)
    add_box_head_config(cfg)
    add_mil_config(cfg)
    add_refinement_config(cfg)
    add_cdb_config(cfg)
    add_casd_config(cfg)
    add_wsol_config(cfg)
    add_csra_config(cfg)
    add_adl_config(cfg)
    add_scm_config(cfg)
    add_cropcam_config(cfg)
    add_test_config(cfg)
    add_solver_config(cfg)
    add_cdb_solver_config(cfg)


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

    # Photometric distortion of training images, once per image before the views are made
    # (CASD's "augmentation": random brightness, contrast, saturation, each applied with
    # probability 1/2). Ranges are detectron2's intensity factors.
    cfg.INPUT.PHOTOMETRIC = CN()
    cfg.INPUT.PHOTOMETRIC.ENABLED = False
    cfg.INPUT.PHOTOMETRIC.BRIGHTNESS = (0.875, 1.125)
    cfg.INPUT.PHOTOMETRIC.CONTRAST = (0.5, 1.5)
    cfg.INPUT.PHOTOMETRIC.SATURATION = (0.5, 1.5)


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


def add_box_head_config(cfg):
    # Dropout after fc6 and fc7 (VGG16's classifier uses 0.5).
    cfg.MODEL.ROI_BOX_HEAD.DROPOUT = 0.5


def add_mil_config(cfg):
    """The multiple-instance head (WSDDN, ContextLocNet)."""
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
    # WSDDN: std of the normal init of its two Linear layers (wetectron: 0.001).
    cfg.MODEL.MIL.INIT_STD = 0.01
    # WSDDN: add a background column to both streams (C+1-way softmaxes, image label 0 for it)
    # and average the BCE over C+1 entries, as wetectron's 21-way head on VOC.
    cfg.MODEL.MIL.BACKGROUND_COLUMN = False
    # ContextLocNet (MODEL.MIL.NAME "ContextLocNet"): the context ring is the box scaled by this
    # factor minus the box; the frame ring is the box minus the box scaled by its inverse.
    cfg.MODEL.MIL.CONTEXT_SCALE = 1.8
    # ContextLocNet: margin of the hinge loss max(0, margin - y' score) on image scores.
    cfg.MODEL.MIL.HINGE_MARGIN = 1.0
    # ContextLocNet: RoI scores (test, and the refinement stages' pseudo labels): "raw"
    # fc8c * softmax_r(L) (the paper's, may be negative) or "softmax" softmax_c(fc8c) * softmax_r(L)
    # (CASD's, in [0, 1]; required under refinement stages).
    cfg.MODEL.MIL.CONTEXT_ROI_SCORES = "raw"


def add_test_config(cfg):
    # Evaluators run on each test set: any of "voc", "coco", "corloc". An empty list picks by the
    # dataset's evaluator_type (pascal_voc -> voc + corloc, coco -> coco + corloc).
    cfg.TEST.EVALUATORS = []
    # CorLoc: IoU of the top box of a class with a GT box of it that counts as a hit.
    cfg.TEST.CORLOC_IOU = 0.5
    # CorLoc: whether an image whose objects of a class are all "difficult" counts for that class
    # (True in the public WSOD code that reported CorLoc: wetectron, pcl.pytorch).
    cfg.TEST.CORLOC_COUNT_DIFFICULT_ONLY = True


def add_refinement_config(cfg):
    """Online refinement (OICR / PCL / MIST stages, box regression)."""
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
    # Std of the normal init of each stage's (and the Fast R-CNN branch's) class layer; the box
    # layers use 0.001 (wetectron: 0.001 for both; pcl.pytorch: 0.01).
    cfg.MODEL.REFINEMENT.CLS_INIT_STD = 0.01
    # RoI assignment when its max IoU ties between pseudo-GTs: "score" (the higher-scoring one)
    # or "first" (the first listed, class-major: wetectron's and pcl.pytorch's argmax).
    cfg.MODEL.REFINEMENT.IOU_TIE = "score"
    # PCL cluster centres: "greedy" (the first PCL_MAX_CLUSTERS centres by degree) or "released"
    # (pcl.pytorch 0.4.0: take centres until at most PCL_MAX_CLUSTERS candidates remain, then
    # keep the PCL_MAX_CLUSTERS centres of highest score).
    cfg.MODEL.REFINEMENT.PCL_CENTRES = "greedy"
    # Test boxes with regression: "boxes" (mean of each stage's decoded boxes) or "deltas"
    # (decode the mean of the stages' deltas once, as wetectron).
    cfg.MODEL.REFINEMENT.TEST_BOX_AVERAGE = "boxes"
    # pcl.pytorch's WITH_FRCNN: a Fast R-CNN branch (class + box layers on fc7) trained on OICR
    # pseudo labels from the last stage's scores; at test its softmax is averaged 1:1 with the
    # stages' mean score and its class-specific deltas give the boxes.
    cfg.MODEL.REFINEMENT.FRCNN_BRANCH = False


def add_cdb_config(cfg):
    """Concrete DropBlock (Ren et al. 2020; wetectron's DB.*); its optimizer is SOLVER.CDB."""
    cfg.MODEL.CDB = CN()
    # Mask the pooled RoI features in training (wetectron's DB.METHOD "concrete").
    cfg.MODEL.CDB.ENABLED = False
    # Drop rate tau: a cell seeds a block with probability sigmoid(.) * tau / BLOCK_SIZE^2.
    cfg.MODEL.CDB.DROP_RATE = 0.3
    # Side of the square block dropped around each seed cell (DB.SIZE).
    cfg.MODEL.CDB.BLOCK_SIZE = 3
    # Temperature of the concrete (Gumbel-softmax) relaxation of the seeds (DB.GSM_THRES).
    cfg.MODEL.CDB.TEMPERATURE = 0.01
    # Binary seeds with a straight-through gradient (DB.IS_HARD) rather than relaxed ones.
    cfg.MODEL.CDB.HARD = True
    # The generator minimises -LOSS_WEIGHT x (the detector's total loss) (DB.WEIGHT).
    cfg.MODEL.CDB.LOSS_WEIGHT = 0.01


def add_casd_config(cfg):
    """CASD self-distillation and Inverted Attention (ROI_HEADS.NAME "CASDROIHeads")."""
    cfg.MODEL.CASD = CN()
    # gamma of image-wise CASD (RoI attention of each view distilled to the max over views); 0 off.
    cfg.MODEL.CASD.IW_WEIGHT = 0.0
    # Weight of layer-wise CASD (RoI attention of each layer distilled to the max over layers,
    # and over views when IW is on too); 0 off.
    cfg.MODEL.CASD.LW_WEIGHT = 0.0
    # Backbone outputs whose RoI attention enters LW (must be in the backbone's out features).
    cfg.MODEL.CASD.LW_LAYERS = ["conv3", "conv4", "conv5"]
    # RoI attention transform: "sigmoid_minmax" (paper) or "minmax" (un-squashed, [0, 1]).
    cfg.MODEL.CASD.ATTENTION_TRANSFORM = "sigmoid_minmax"

    # Inverted Attention on the refinement stages' RoI features.
    cfg.MODEL.CASD.IA = CN()
    cfg.MODEL.CASD.IA.ENABLED = False
    # (early, late) schedule: the late values apply from iteration LATE_START_ITER on.
    cfg.MODEL.CASD.IA.TOP_CELLS = (25, 29)
    cfg.MODEL.CASD.IA.DROP_CELLS = (16, 20)
    cfg.MODEL.CASD.IA.FG_FRACTION = (1.0 / 6.0, 1.0 / 5.0)
    cfg.MODEL.CASD.IA.BG_FRACTION = (1.0 / 18.0, 1.0 / 15.0)
    # CASD on VOC07: its learning-rate step (50k) plus 10k.
    cfg.MODEL.CASD.IA.LATE_START_ITER = 60000
    # A RoI keeps its mask only if its pseudo-class probability drops by more than this.
    cfg.MODEL.CASD.IA.MIN_DROP = 0.02
    # RoIs per image that IA ranks: up to this many random (foreground, other) ones, as the
    # released code ranks its 32 + 96 sampled RoIs; the cost of IA grows with them. <= 0: all.
    cfg.MODEL.CASD.IA.CANDIDATES = (32, 96)


def add_wsol_config(cfg):
    """Classification-with-maps models (WSOLClassifier): WSOL (CAM, ADL, TS-CAM, SCM, CropCAM)
    and multi-label classification (CSRA)."""
    cfg.MODEL.WSOL = CN()
    # Number of classes C of the classifier (CUB 200, ILSVRC 1000, OpenImages30k 100).
    cfg.MODEL.WSOL.NUM_CLASSES = 200
    # Head from WSOL_HEAD_REGISTRY: "CAMHead", "CSRAHead" or "TSCAMHead".
    cfg.MODEL.WSOL.HEAD_NAME = "CAMHead"
    # Backbone output read by the head ("conv5" VGG, "res5" ResNet, "patch_tokens" ViT).
    cfg.MODEL.WSOL.IN_FEATURE = "conv5"
    # CAMHead: output channels of 3x3 conv + ReLU layers before GAP (VGG-GAP's conv6: [1024]).
    cfg.MODEL.WSOL.CONV_DIMS = []
    # "ce": softmax cross-entropy, one label per image (WSOL); "bce": sigmoid BCE (multi-label).
    cfg.MODEL.WSOL.LOSS = "ce"
    # Class of the test map: "gt" (first GT label: GT-known protocol) or "top1" (predicted).
    cfg.MODEL.WSOL.TEST_CAM_CLASS = "gt"

    cfg.INPUT.WSOL = CN()
    # Training view: resize to a RESIZE_TRAIN square, random CROP_TRAIN square (wsolevaluation:
    # 256 / 224), then INPUT.RANDOM_FLIP.
    cfg.INPUT.WSOL.RESIZE_TRAIN = 256
    cfg.INPUT.WSOL.CROP_TRAIN = 224
    # Non-empty (low, high): instead a random resized crop of that area fraction, resized to
    # CROP_TRAIN (CSRA: (0.7, 1.0)).
    cfg.INPUT.WSOL.RESIZED_CROP_SCALE = []
    # Test view: the image resized to a SIZE_TEST square.
    cfg.INPUT.WSOL.SIZE_TEST = 224

    cfg.TEST.WSOL = CN()
    # Images per batch at test.
    cfg.TEST.WSOL.IMS_PER_BATCH = 1
    # Step of the CAM thresholds tau in [0, 1) (wsolevaluation: 0.01 or 0.001).
    cfg.TEST.WSOL.CAM_CURVE_INTERVAL = 0.01
    # IoU thresholds of MaxBoxAccV2 (delta in {30, 50, 70} %).
    cfg.TEST.WSOL.IOU_THRESHOLDS = [0.3, 0.5, 0.7]
    # Box mining of the reported box accuracies: all contours (True, V2) or the largest (False).
    cfg.TEST.WSOL.MULTI_CONTOUR = True
    # Edges of the GT-box-area / image-area bins of the size-wise accuracies.
    cfg.TEST.WSOL.SIZE_BINS = [0.0, 0.1, 0.25, 0.5, 1.0]
    # k of Top-k Loc.
    cfg.TEST.WSOL.TOP_K = 5
    # (H, W) grid the maps and boxes are evaluated on (wsolevaluation: 224, 224); empty: the
    # original image size.
    cfg.TEST.WSOL.EVAL_SIZE = []


def add_csra_config(cfg):
    """Class-specific residual attention (CSRA) heads of the multi-label classifier."""
    cfg.MODEL.CSRA = CN()
    # Number of CSRA heads H (1, 2, 4, 6 or 8), temperatures as in the paper.
    cfg.MODEL.CSRA.NUM_HEADS = 1
    # Weight lambda of the class-specific residual attention term (Eq. 1).
    cfg.MODEL.CSRA.LAMBDA = 0.1


def add_adl_config(cfg):
    """Attention-based Dropout Layers inside the WSOL backbone."""
    cfg.MODEL.ADL = CN()
    # Backbone submodules after which ADL runs, e.g. VGG16 "features.16" (pool3), "features.22"
    # (conv4_3), "features.29" (conv5_3); ResNet "layer3.0", "layer4.0", "layer4.2". Empty: off.
    cfg.MODEL.ADL.POSITIONS = []
    # Probability that a batch uses the drop mask rather than the importance map (drop_rate).
    cfg.MODEL.ADL.DROP_RATE = 0.75
    # gamma: the drop mask erases attention >= gamma * its maximum.
    cfg.MODEL.ADL.THRESHOLD = 0.8


def add_scm_config(cfg):
    """Semantic Coupling Module, TS-CAM's training-time map refinement."""
    cfg.MODEL.SCM = CN()
    # Train TS-CAM through SCM (its semantic map refined by L diffusion blocks; never at test).
    cfg.MODEL.SCM.ENABLED = False
    # Number of activation diffusion blocks L.
    cfg.MODEL.SCM.NUM_BLOCKS = 4
    # Initial learnable lambda of the semantic Laplacian (Eq. 4).
    cfg.MODEL.SCM.LAMBDA_INIT = 1.0
    # Initial learnable beta of the tanhshrink filter (Eq. 7).
    cfg.MODEL.SCM.BETA_INIT = 0.5
    # alpha of the Newton-Schulz initial guess X0 = alpha * L^T (Eq. 6).
    cfg.MODEL.SCM.ALPHA = 0.002
    # Newton-Schulz iterations p.
    cfg.MODEL.SCM.ITERATIONS = 4
    # Residual connections of the paper's Fig. 2 (S + S * T, F + T).
    cfg.MODEL.SCM.RESIDUAL = True
    # Released-code scale handling (min-max normalised F, filter knee beta * max F).
    cfg.MODEL.SCM.NORMALIZE = True


def add_cropcam_config(cfg):
    """CropCAM, the small-object zoom of the WSOL classifier."""
    cfg.MODEL.CROPCAM = CN()
    # Small-object consistency: zoom on the CAM's crop for a second pass (training and test).
    cfg.MODEL.CROPCAM.ENABLED = False
    # Iteration from which training uses the CropCAM losses (plain classification before).
    cfg.MODEL.CROPCAM.START_ITER = 0
    # tau: crop = squared box of the CAM cells above tau * max (--crop_threshold).
    cfg.MODEL.CROPCAM.TAU = 0.15
    # nu: at test the zoomed map is used when the crop covers less than nu (--crop_ratio).
    cfg.MODEL.CROPCAM.NU = 0.3
    # lambda_3: weight of classification vs. attention consistency (--loss_ratio).
    cfg.MODEL.CROPCAM.LAMBDA = 0.9
    # lambda_1: pull of the CAM toward the pasted zoomed map (--loss_pos).
    cfg.MODEL.CROPCAM.LAMBDA_POS = 0.9
    # lambda_2: push of the CAM away from the background map (--loss_neg).
    cfg.MODEL.CROPCAM.LAMBDA_NEG = 0.1


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


def add_cdb_solver_config(cfg):
    """Concrete DropBlock generator's own SGD and schedule (wetectron's SOLVER_CDB defaults)."""
    cfg.SOLVER.CDB = CN()
    # Learning rate, bias lr factor, momentum, weight decay (biases: WEIGHT_DECAY_BIAS).
    cfg.SOLVER.CDB.BASE_LR = 0.001
    cfg.SOLVER.CDB.BIAS_LR_FACTOR = 2.0
    cfg.SOLVER.CDB.MOMENTUM = 0.9
    cfg.SOLVER.CDB.WEIGHT_DECAY = 0.0005
    cfg.SOLVER.CDB.WEIGHT_DECAY_BIAS = 0.0
    # The lr is multiplied by GAMMA at each of STEPS (wetectron's VOC recipe: 3.0, raising it).
    cfg.SOLVER.CDB.GAMMA = 0.1
    cfg.SOLVER.CDB.STEPS = (30000,)
    # Linear warm-up from WARMUP_FACTOR x BASE_LR over WARMUP_ITERS iterations.
    cfg.SOLVER.CDB.WARMUP_FACTOR = 1.0 / 3
    cfg.SOLVER.CDB.WARMUP_ITERS = 500
