from .vgg import VGG, build_vgg_backbone
from .resnet_wsol import ResNetWSOL, build_resnet_wsol_backbone
from .deit import ViTWSOL, build_vit_wsol_backbone
