"""Classifier data (WSOL, multi-label): square views, no proposals."""
