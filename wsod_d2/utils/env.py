"""Facts about the installed detectron2."""


def has_detectron2_ops() -> bool:
    """Whether detectron2's C++ ops are built (not the Python-only install's stand-in)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "WSOD_D2_STANDIN", False)
