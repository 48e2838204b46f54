from .wsod_rcnn import WSODRCNN
from .wsol import WSOLClassifier
