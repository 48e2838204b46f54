"""Stand-in for ``detectron2._C`` in a Python-only detectron2 install (no C++ ops built).

Installed by ``tools/install_detectron2.py`` as ``detectron2/_C.py``. wsod_d2 never calls these
ops; anything that does gets an error that names the op instead of an import failure at start.
"""

WSOD_D2_STANDIN = True


def get_compiler_version():
    return "none (Python-only detectron2: C++ ops not built)"


def get_cuda_version():
    return "none (Python-only detectron2: C++ ops not built)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    raise RuntimeError(
        f"detectron2 C++ op '{name}' was called, but this detectron2 is the Python-only install "
        "made by wsod_d2's tools/install_detectron2.py (rotated boxes, deformable conv and the "
        "fast COCO eval are unavailable). Build detectron2 from source to use it."
    )
