from .wsod_rcnn import WSODRCNN
from .wsol import WSOLClassifier
from .casd_rcnn import CASDRCNN
