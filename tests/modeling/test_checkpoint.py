"""WSODCheckpointer reads the public ImageNet files of each backbone by name (each backbone owns
its conversion, the meta-architecture decides where the file's classifier goes)."""
import os

import timm
import torch
import torchvision
from detectron2.modeling import build_model

from wsod_d2.config import get_wsod_cfg
from wsod_d2.modeling import WSODCheckpointer
from wsod_d2.modeling.backbone.imagenet import IMAGENET_CLASSIFIER, ImageNetBackbone
from wsod_d2.testing import REPO_ROOT, synthetic_wsol_cfg


def small_vgg16_cfg():
    path = os.path.join(REPO_ROOT, "configs/PascalVOC-Detection/wsddn_vgg16.yaml")
    return get_wsod_cfg(path, ["MODEL.DEVICE", "cpu", "MODEL.ROI_BOX_HEAD.FC_DIM", 8])


def test_torchvision_and_caffe_vgg16_weights_load_by_name(tmp_path):
    model = build_model(small_vgg16_cfg())
    state = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    # torchvision names: features.<i> and classifier.0 / classifier.3 for fc6 / fc7.
    tv = {k[len("backbone.") :]: v for k, v in state.items() if k.startswith("backbone.features")}
    tv["classifier.0.weight"] = state["roi_heads.box_head.fc6.weight"]
    tv["classifier.3.bias"] = state["roi_heads.box_head.fc7.bias"]
    torch.save(tv, tmp_path / "vgg16_tv.pth")
    WSODCheckpointer(model).load(str(tmp_path / "vgg16_tv.pth"))
    loaded = model.state_dict()
    assert torch.equal(loaded["backbone.features.28.weight"], state["backbone.features.28.weight"])
    assert torch.equal(
        loaded["roi_heads.box_head.fc6.weight"], state["roi_heads.box_head.fc6.weight"]
    )
    # Caffe blob names map onto the same tensors: conv5_3 is torchvision's features.28.
    caffe = model.imagenet_state_dict(caffe_names(tv))
    assert set(caffe) == {
        "backbone.features.28.weight",
        "backbone.features.0.bias",
        "roi_heads.box_head.fc7.bias",
    }
    assert model.imagenet_state_dict({"model.foo": torch.zeros(1)}) is None
    # The backbone's own conversion: its names, the ImageNet classifier under the contract's
    # prefix; the WSOL classifier, whose head has its own classes, leaves those out.
    assert set(model.backbone.imagenet_state_dict(caffe_names(tv))) == {
        "features.28.weight",
        "features.0.bias",
        IMAGENET_CLASSIFIER + "fc7.bias",
    }
    wsol = build_model(synthetic_wsol_cfg("cam_vgg_tiny.yaml"))
    assert set(wsol.imagenet_state_dict(caffe_names(tv))) == {
        "backbone.features.28.weight",
        "backbone.features.0.bias",
    }
    # The contract's default: a backbone without a conversion of its own reads no ImageNet file.
    assert ImageNetBackbone.imagenet_state_dict(model.backbone, tv) is None


def caffe_names(tv):
    return {
        "conv5_3_w": tv["features.28.weight"],
        "conv1_1_b": tv["features.0.bias"],
        "fc7_b": tv["classifier.3.bias"],
    }


def test_imagenet_files_load_by_name(tmp_path):
    """A torchvision ResNet file and a DeiT release file (state under "model") load as they are."""
    torchvision_file = str(tmp_path / "resnet18.pth")
    reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), torchvision_file)
    cfg = synthetic_wsol_cfg(
        "cam_vgg_tiny.yaml",
        {
            "MODEL.BACKBONE.NAME": "build_resnet_wsol_backbone",
            "MODEL.RESNET_WSOL.DEPTH": 18,
            "MODEL.WSOL.IN_FEATURE": "res5",
            "MODEL.WSOL.CONV_DIMS": "[]",
        },
    )
    model = build_model(cfg)
    head_before = model.head.fc.weight.clone()
    WSODCheckpointer(model).load(torchvision_file)
    torch.testing.assert_close(
        model.backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight
    )
    torch.testing.assert_close(model.backbone.bn1.running_var, reference.bn1.running_var)
    assert torch.equal(model.head.fc.weight, head_before)  # the ImageNet classifier is left out

    deit = timm.create_model(
        "deit_small_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=24,
        depth=2,
        num_heads=2,
    )
    deit_file = str(tmp_path / "deit.pth")
    torch.save({"model": deit.state_dict()}, deit_file)
    cfg = synthetic_wsol_cfg(
        "tscam_vit_tiny.yaml",
        {
            "MODEL.VIT.IMG_SIZE": 48,
            "MODEL.VIT.PATCH_SIZE": 8,
            "MODEL.VIT.EMBED_DIM": 24,
            "MODEL.VIT.DEPTH": 2,
            "MODEL.VIT.NUM_HEADS": 2,
        },
    )
    model = build_model(cfg)
    WSODCheckpointer(model).load(deit_file)
    vit = model.backbone.vit
    torch.testing.assert_close(vit.blocks[1].mlp.fc2.weight, deit.blocks[1].mlp.fc2.weight)
    torch.testing.assert_close(vit.cls_token, deit.cls_token)
    # 4x4 -> 6x6 grid: the patch position embeddings are resampled, the class one kept.
    assert vit.pos_embed.shape == (1, 37, 24)
    torch.testing.assert_close(vit.pos_embed[:, 0], deit.pos_embed[:, 0])
