"""WSOLClassifier: losses and label checks, inference and the CAM class, SCM / ADL / CropCAM in the
model, the optimizer."""


import pytest
import torch
from detectron2.layers import ShapeSpec
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch import nn

from wsod_d2.modeling.backbone.imagenet import ImageNetBackbone
from wsod_d2.modeling.wsol.adl import ADL
from wsod_d2.modeling.wsol.classifier import CropCAMOptions, WSOLClassifier
from wsod_d2.modeling.wsol.heads import CAMHead
from wsod_d2.modeling.wsol.scm import SCM
from wsod_d2.testing import synthetic_wsol_cfg


def batch(n, size, labels, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = []
    for i, label in enumerate(labels):
        multi_hot = torch.zeros(n)
        multi_hot[label] = 1.0
        image = torch.randint(0, 256, (3, size, size), generator=g).float()
        inputs.append({"image": image, "image_labels": multi_hot, "image_id": f"img{i}"})
    return inputs


def test_training_losses_and_label_checks():
    torch.manual_seed(0)
    model = build_model(
        synthetic_wsol_cfg("cam_vgg_tiny.yaml", {"MODEL.WSOL.NUM_CLASSES": 4})
    ).train()
    with EventStorage():
        losses = model(batch(4, 32, [0, 3]))
        assert set(losses) == {"loss_cls"} and torch.isfinite(losses["loss_cls"])
        two = batch(4, 32, [0, 3])
        two[1]["image_labels"][1] = 1.0
        with pytest.raises(ValueError, match=r"images \['img1'\] have another number"):
            model(two)
        two[0]["image"] = torch.zeros(3, 40, 40)
        with pytest.raises(ValueError, match="views of one size"):
            model(two)
    bce = build_model(
        synthetic_wsol_cfg(
            "cam_vgg_tiny.yaml", {"MODEL.WSOL.NUM_CLASSES": 4, "MODEL.WSOL.LOSS": "bce"}
        )
    )
    two = batch(4, 32, [0, 3])
    two[1]["image_labels"][1] = 1.0
    with EventStorage():
        losses = bce.train()(two)
    assert set(losses) == {"loss_cls"} and torch.isfinite(losses["loss_cls"])


def test_inference_outputs_and_cam_class():
    torch.manual_seed(0)
    model = build_model(
        synthetic_wsol_cfg("cam_vgg_tiny.yaml", {"MODEL.WSOL.NUM_CLASSES": 4})
    ).eval()
    inputs = batch(4, 32, [2, 1])
    del inputs[1]["image_labels"]
    inputs.append(dict(batch(4, 32, [0])[0], cam_class=3))
    with torch.no_grad():
        out = model(inputs)
        features = model.head(model.backbone(model.preprocess_image(inputs)))
    classes = [o["cam_class"] for o in out]
    assert classes == [2, int(out[1]["image_scores"].argmax()), 3]  # GT, top-1, requested
    expected = model.head.class_maps(features, torch.tensor(classes))
    for o, e in zip(out, expected):
        assert o["cam"].shape == (4, 4)  # 32 px at stride 8
        torch.testing.assert_close(o["cam"], e)
        torch.testing.assert_close(o["image_scores"].sum(), torch.tensor(1.0))
    model.test_cam_class = "top1"
    with torch.no_grad():
        assert model(inputs[:1])[0]["cam_class"] == int(out[0]["image_scores"].argmax())


def count_calls(modules):
    calls = []
    for m in modules:
        m.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_scm_only_in_training():
    cfg = synthetic_wsol_cfg(
        "scm_vit_tiny.yaml",
        {
            "MODEL.WSOL.NUM_CLASSES": 3,
            "MODEL.VIT.IMG_SIZE": 32,
            "INPUT.WSOL.CROP_TRAIN": 32,
            "MODEL.VIT.EMBED_DIM": 24,
            "MODEL.VIT.DEPTH": 2,
            "MODEL.VIT.NUM_HEADS": 2,
        },
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    assert isinstance(model.scm, SCM) and model.scm.grid_size == (4, 4)
    calls = count_calls([model.scm, *model.scm.blocks])
    inputs = batch(3, 32, [0, 2])
    model.eval()
    with torch.no_grad():
        out = model(inputs)
    assert calls == []  # SCM is not in the inference graph
    plain = build_model(
        synthetic_wsol_cfg(
            "tscam_vit_tiny.yaml",
            {
                "MODEL.WSOL.NUM_CLASSES": 3,
                "MODEL.VIT.IMG_SIZE": 32,
                "MODEL.VIT.EMBED_DIM": 24,
                "MODEL.VIT.DEPTH": 2,
                "MODEL.VIT.NUM_HEADS": 2,
            },
        )
    ).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("scm.")})
    with torch.no_grad():
        reference = plain(inputs)
    for o, r in zip(out, reference):
        torch.testing.assert_close(o["cam"], r["cam"])  # TS-CAM's coupled map A * S_c
        torch.testing.assert_close(o["cam"], o["attention"] * o["semantic"])
    model.train()
    with EventStorage():
        losses = model(inputs)
    assert len(calls) == 1 + 4 and torch.isfinite(losses["loss_cls"])
    losses["loss_cls"].backward()
    assert model.scm.blocks[0].lam.grad is not None
    with pytest.raises(ValueError, match="SCM needs a head with a semantic map"):
        build_model(synthetic_wsol_cfg("cam_vgg_tiny.yaml", {"MODEL.SCM.ENABLED": True}))


def test_adl_positions_from_config():
    cfg = synthetic_wsol_cfg("adl_vgg_tiny.yaml", {"MODEL.WSOL.NUM_CLASSES": 4})
    torch.manual_seed(0)
    model = build_model(cfg)
    features = dict(model.backbone.named_modules())
    adls = [features[p].adl for p in ("features.11", "features.17", "features.24")]
    assert all(isinstance(a, ADL) and a.drop_rate == 0.75 and a.threshold == 0.8 for a in adls)
    assert isinstance(features["features.11"], nn.MaxPool2d)  # pool3 of the tiny VGG
    assert isinstance(features["features.17"], nn.ReLU) and isinstance(
        features["features.24"], nn.ReLU
    )
    calls = count_calls(adls)
    inputs = batch(4, 32, [1, 2])
    with torch.no_grad():
        eval_out = model.eval()(inputs)
        plain = build_model(
            synthetic_wsol_cfg("cam_vgg_tiny.yaml", {"MODEL.WSOL.NUM_CLASSES": 4})
        ).eval()
        plain.load_state_dict(model.state_dict())
        plain_out = plain(inputs)
    for a, b in zip(eval_out, plain_out):
        torch.testing.assert_close(a["cam"], b["cam"])  # ADL is the identity at test
    with EventStorage():
        model.train()(inputs)
    assert len(calls) == 6  # 3 at test (identity), 3 in training


class PooledImage(ImageNetBackbone):
    """A backbone whose feature map is the image average-pooled by 8: CAMs follow the image."""

    def forward(self, x):
        return {"f": nn.functional.avg_pool2d(x, 8)}

    def output_shape(self):
        return {"f": ShapeSpec(channels=3, stride=8)}


def cropcam_model(nu):
    head = CAMHead(in_feature="f", in_channels=3, conv_dims=[], num_classes=2)
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        head.fc.bias.zero_()
    opts = CropCAMOptions(tau=0.5, nu=nu, lam=0.9, l_pos=0.9, l_neg=0.1, start_iter=2)
    return WSOLClassifier(
        backbone=PooledImage(),
        head=head,
        pixel_mean=[0.0] * 3,
        pixel_std=[1.0] * 3,
        loss="ce",
        test_cam_class="gt",
        cropcam=opts,
    )


def bright_square_input(cells):
    """64x64 image; channel 0 is 1 on the given 8-px cells (rows, cols slices), else 0."""
    image = torch.zeros(3, 64, 64)
    rows, cols = cells
    image[0, rows.start * 8 : rows.stop * 8, cols.start * 8 : cols.stop * 8] = 1.0
    return {"image": image, "image_labels": torch.tensor([1.0, 0.0]), "image_id": "sq"}


def test_cropcam_test_rule_area_ratio_below_nu():
    # A 2x2-cell bright square on the 8x8 CAM: crop box 16 x 16 px = 1/16 of the 64 x 64 image.
    small = bright_square_input((slice(2, 4), slice(2, 4)))
    for nu, zoomed in ((0.0625, False), (0.07, True)):
        model = cropcam_model(nu).eval()
        calls = count_calls([model.backbone])
        with torch.no_grad():
            cam = model([small])[0]["cam"]
        assert len(calls) == (2 if zoomed else 1)
        if zoomed:
            # Pasted at input resolution: outside the crop, the CAM upsampled (bicubic) and
            # min-max normalised; inside, the zoomed CAM normalised on its own to [0, 1].
            assert cam.shape == (64, 64)
            cam8 = small["image"][0].reshape(8, 8, 8, 8).mean(dim=(1, 3))[None, None]
            up = nn.functional.interpolate(cam8, size=(64, 64), mode="bicubic")[0, 0]
            up = (up - up.min()) / (up.max() - up.min())
            outside = torch.ones(64, 64, dtype=torch.bool)
            outside[16:32, 16:32] = False
            torch.testing.assert_close(cam[outside], up[outside])
            inside = cam[16:32, 16:32]
            assert inside.min() == 0 and inside.max() == 1
        else:
            assert cam.shape == (8, 8)
            torch.testing.assert_close(cam[2:4, 2:4], torch.ones(2, 2))
    large = bright_square_input((slice(0, 7), slice(1, 8)))
    model = cropcam_model(0.7).eval()
    with torch.no_grad():
        assert model([large])[0]["cam"].shape == (8, 8)  # 7x7 of 8x8 cells: 0.77 >= nu


def test_cropcam_training_switch():
    model = cropcam_model(0.5).train()
    inputs = [
        bright_square_input((slice(2, 4), slice(2, 5))),
        bright_square_input((slice(0, 3), slice(0, 3))),
    ]
    with EventStorage(start_iter=1):
        assert set(model(inputs)) == {"loss_cls"}
    with EventStorage(start_iter=2):
        losses = model(inputs)
    assert set(losses) == {"loss_cropcam_cls", "loss_cropcam_att"}
    assert all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="CropCAM trains with single-label cross-entropy"):
        build_model(synthetic_wsol_cfg("cam_vgg_tiny_cropcam.yaml", {"MODEL.WSOL.LOSS": "bce"}))
