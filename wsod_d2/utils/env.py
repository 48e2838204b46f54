"""Facts about the installation: where the source checkout is, whether detectron2 has its ops,
whether the installed detectron2 can run with the installed numpy and Pillow."""
import functools
import os
import re
import warnings
from typing import List, Optional, Sequence, Tuple

# The source checkout that holds configs/ and tools/ (wsod_d2 is installed editable from it).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def has_detectron2_ops() -> bool:
    """Whether detectron2's C++ ops are built (not the Python-only install's stand-in)."""
    try:
        from detectron2 import _C
    except ImportError:
        return False
    return not getattr(_C, "WSOD_D2_STANDIN", False)


# Aliases that detectron2 v0.6 uses and that numpy 1.24 / Pillow 10 removed; the detectron2 that
# tools/install_detectron2.py installs has them replaced (keep both lists in step).
REMOVED_ALIASES = {
    "np": ("bool", "int", "float", "str", "object"),
    "Image": ("LINEAR", "ANTIALIAS", "CUBIC"),
}


def missing_aliases() -> List[str]:
    """The REMOVED_ALIASES ("np.int", "Image.LINEAR", ...) that the installed numpy and Pillow
    lack."""
    import numpy
    from PIL import Image

    modules = {"np": numpy, "Image": Image}
    out = []
    with warnings.catch_warnings():
        # numpy < 1.24 still has them, with a deprecation warning on access.
        warnings.simplefilter("ignore")
        for prefix, names in REMOVED_ALIASES.items():
            out += [f"{prefix}.{n}" for n in names if not hasattr(modules[prefix], n)]
    return out


def alias_uses(package_dir: str, aliases: Sequence[str]) -> List[Tuple[str, str]]:
    """(``file:line``, alias) for each code line under ``package_dir`` that uses one of
    ``aliases`` (comments skipped)."""
    if not aliases:
        return []
    pattern = re.compile(r"\b(" + "|".join(re.escape(a) for a in aliases) + r")\b(?!_)")
    uses = []
    for folder, _, files in sorted(os.walk(package_dir)):
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(folder, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, 1):
                    code = line.split("#", 1)[0]
                    for match in pattern.finditer(code):
                        uses.append((f"{os.path.relpath(path, package_dir)}:{number}", match[1]))
    return uses


def alias_problem(package_dir: str, aliases: Sequence[str]) -> Optional[str]:
    """What to tell the user when the detectron2 at ``package_dir`` uses some of ``aliases``
    (names the installed numpy / Pillow lack); None when it uses none."""
    import numpy
    import PIL

    uses = alias_uses(package_dir, aliases)
    if not uses:
        return None
    shown = ", ".join(f"{alias} ({where})" for where, alias in uses[:6])
    return (
        f"detectron2 at {package_dir} uses names that numpy {numpy.__version__} / Pillow "
        f"{PIL.__version__} removed: {shown}{' ...' if len(uses) > 6 else ''} ({len(uses)} "
        "uses); it would crash mid-run (VOC evaluation on np.bool after training). Fix: rerun "
        "`bash tools/setup_env.sh` (it reinstalls the tested versions and a patched detectron2), "
        "or run `python tools/install_detectron2.py` with this Python to install detectron2 with "
        "those names patched, or install numpy<1.24 and Pillow<10."
    )


@functools.lru_cache(maxsize=None)
def check_environment() -> None:
    """Raise RuntimeError, before any training, when the installed detectron2 uses a numpy or
    Pillow name that the installed numpy / Pillow no longer have (:func:`alias_problem`)."""
    import detectron2

    problem = alias_problem(os.path.dirname(detectron2.__file__), missing_aliases())
    if problem:
        raise RuntimeError(problem)
