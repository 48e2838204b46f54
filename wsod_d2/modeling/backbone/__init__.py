from wsod_d2.modeling.backbone.deit import ViTWSOL, build_vit_wsol_backbone
from wsod_d2.modeling.backbone.imagenet import ImageNetBackbone, imagenet_model_state_dict
from wsod_d2.modeling.backbone.resnet import ResNetWSOL, build_resnet_wsol_backbone
from wsod_d2.modeling.backbone.vgg import VGG, build_vgg_backbone
