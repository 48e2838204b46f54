"""Facts about the installation: where the source checkout is, whether detectron2 has its ops."""
import os

# The source checkout that holds configs/ and tools/ (wsod_d2 is installed editable from it).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def has_detectron2_ops() -> bool:
    """Whether detectron2's C++ ops are built (not the Python-only install's stand-in)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "WSOD_D2_STANDIN", False)
