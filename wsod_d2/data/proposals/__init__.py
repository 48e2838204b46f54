"""Precomputed proposals: the file format, its checks, converters, and selective search."""
