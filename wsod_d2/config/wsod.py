"""Config keys of the detectors: box head, MIL head, online refinement, Concrete DropBlock,
CASD, their test-time options."""
from detectron2.config import CfgNode as CN


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
    # Multiplier of every stage's losses (CASD's release: 0.1).
    cfg.MODEL.REFINEMENT.LOSS_WEIGHT = 1.0
    # Stages whose scores and boxes make the test output, numbered from 1; empty: all of them
    # (CASD's release: [1]).
    cfg.MODEL.REFINEMENT.TEST_STAGES = []
    # Multi-view training: stage k's pseudo labels from the "mean" over views of stage k-1's
    # scores (CASD), or each view's from its own ("per_view").
    cfg.MODEL.REFINEMENT.VIEW_LABELS = "mean"
    # Box-regression targets: the pseudo-GT box ("pseudo_gt") or the mean of the proposals
    # whose IoU with it is above REG_TARGET_IOU ("neighbour_mean", CASD's release).
    cfg.MODEL.REFINEMENT.REG_TARGET = "pseudo_gt"
    cfg.MODEL.REFINEMENT.REG_TARGET_IOU = 0.6
    # CASD's release (roi_sampling.py): RoI labels from fixed IoU bands with the pseudo-GTs and
    # a per-view sample of RoIs trained with plain cross-entropy, instead of the labeller's loss.
    cfg.MODEL.REFINEMENT.SAMPLE = CN()
    cfg.MODEL.REFINEMENT.SAMPLE.ENABLED = False
    # At most this many foreground and background RoIs per image and view.
    cfg.MODEL.REFINEMENT.SAMPLE.NUM_FG = 32
    cfg.MODEL.REFINEMENT.SAMPLE.NUM_BG = 96
    # Foreground: IoU strictly above FG_IOU; background: BG_IOU[0] <= IoU < BG_IOU[1]; the rest
    # is ignored.
    cfg.MODEL.REFINEMENT.SAMPLE.FG_IOU = 0.6
    cfg.MODEL.REFINEMENT.SAMPLE.BG_IOU = (0.1, 0.4)


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
    # Under MODEL.REFINEMENT.SAMPLE the sampled RoIs are the candidates instead.
    cfg.MODEL.CASD.IA.CANDIDATES = (32, 96)
    # Rank the candidates' probability drops over all views of an image together (CASD's
    # release) rather than view by view.
    cfg.MODEL.CASD.IA.RANK_OVER_VIEWS = False
    # The next stage's pseudo labels come from this stage's scores on the unmasked features
    # (CASD's release) rather than on the features it trained on.
    cfg.MODEL.CASD.IA.CHAIN_UNMASKED = False


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


def add_wsod_test_config(cfg):
    """Test-time options of the detectors: proposal jitter in TTA, CASD's released evaluation."""
    # Each TTA pass (TEST.AUG) scores its own random jitter of every proposal (CASD's released
    # test, lib/model/test.py _shuffle_boxes); plain inference is unchanged.
    cfg.TEST.AUG.PROPOSAL_JITTER = CN()
    cfg.TEST.AUG.PROPOSAL_JITTER.ENABLED = False
    # (low, high) of the uniform factor s scaling both sides of a box about its centre.
    cfg.TEST.AUG.PROPOSAL_JITTER.SCALE = (0.95, 1.15)
    # The centre moves by dx x width and dy x height, dx, dy ~ U(-CENTER_SHIFT, CENTER_SHIFT).
    cfg.TEST.AUG.PROPOSAL_JITTER.CENTER_SHIFT = 0.05
    # Seed of the draws: each image's come from (SEED, its image_id), so an evaluation gives the
    # same numbers in any image order and on any number of processes.
    cfg.TEST.AUG.PROPOSAL_JITTER.SEED = 0
    # EVALUATION DEFECT, off unless comparing like with like: reproduces CASD's released VOC07
    # test, whose proposals hold the ground truth (all non-difficult GT boxes but the first, in
    # front of the proposals). Numbers with it include ground truth; test only, training refuses it.
    cfg.TEST.CASD_RELEASE_GT_LEAK = False
