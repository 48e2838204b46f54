"""Data. Importing the package registers the datasets (``datasets/``); ``wsod/`` holds the
detector's mappers and loaders (proposals attached), ``wsol/`` the classifier's."""
from wsod_d2.data import datasets  # noqa: F401  (registration)
from wsod_d2.data.wsod.build import (
    build_wsod_test_loader,
    build_wsod_train_loader,
    get_wsod_dataset_dicts,
)
from wsod_d2.data.wsod.mapper import WSODDatasetMapper
from wsod_d2.data.wsod.multiview_mapper import MultiViewWSODDatasetMapper
