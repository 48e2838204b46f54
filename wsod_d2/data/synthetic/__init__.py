"""Synthetic datasets in the real file formats (VOC, wsolevaluation), made on first use."""
