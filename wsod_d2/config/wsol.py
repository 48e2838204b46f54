"""Config keys of the classifier with class maps: WSOL, CSRA, ADL, SCM, CropCAM."""
from detectron2.config import CfgNode as CN


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
    # Processes computing the box metrics of each image (CAM thresholds, contours, IoUs): 0 = in
    # the evaluating process, -1 = its available cores shared among the local ranks. The metrics
    # are identical for any count.
    cfg.TEST.WSOL.NUM_WORKERS = 0


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
