from . import datasets  # noqa: F401  (registration)
from .build import build_wsod_test_loader, build_wsod_train_loader, get_wsod_dataset_dicts
from .mapper import WSODDatasetMapper
from .multiview_mapper import MultiViewWSODDatasetMapper
