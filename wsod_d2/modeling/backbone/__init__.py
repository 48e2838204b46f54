from .vgg import VGG, build_vgg_backbone
