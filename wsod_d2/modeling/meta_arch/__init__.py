from .wsod_rcnn import WSODRCNN
