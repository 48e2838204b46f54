import torch
from detectron2.config import get_cfg
from detectron2.modeling import build_model

from wsod_d2 import add_wsod_config
from wsod_d2.modeling import WSODCheckpointer
from wsod_d2.modeling.checkpoint import vgg16_imagenet_to_wsod


def small_vgg16_cfg():
    cfg = get_cfg()
    add_wsod_config(cfg)
    cfg.merge_from_file("configs/PascalVOC-Detection/wsddn_vgg16.yaml")
    cfg.merge_from_list(["MODEL.DEVICE", "cpu", "MODEL.ROI_BOX_HEAD.FC_DIM", 8])
    return cfg


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
    caffe = vgg16_imagenet_to_wsod(
        {
            "conv5_3_w": tv["features.28.weight"],
            "conv1_1_b": tv["features.0.bias"],
            "fc7_b": tv["classifier.3.bias"],
        }
    )
    assert set(caffe) == {
        "backbone.features.28.weight",
        "backbone.features.0.bias",
        "roi_heads.box_head.fc7.bias",
    }
    assert vgg16_imagenet_to_wsod({"model.foo": torch.zeros(1)}) is None
