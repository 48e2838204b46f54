"""Detector data: image labels, proposals attached to dataset dicts, mappers, loaders."""
