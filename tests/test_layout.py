"""The package's layout rules (CONVENTIONS.md): imports only go down the layers, the WSOD and WSOL
families do not import each other, no file is over 400 lines, tests import no script."""
import ast
import os
import re

import pytest

from wsod_d2.testing import REPO_ROOT

# Bottom to top: a module may import its own layer and the ones below.
LAYERS = ["utils", "config", "data", "modeling", "evaluation", "solver", "engine"]
TOP = ("benchmarks", "testing")
FAMILIES = ("wsod", "wsol")
MAX_LINES = 400


def _python_files(folder):
    for root, _, files in os.walk(os.path.join(REPO_ROOT, folder)):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def _module(path):
    rel = os.path.relpath(path, REPO_ROOT)[: -len(".py")].split(os.sep)
    return rel[:-1] if rel[-1] == "__init__" else rel


def _wsod_d2_imports(path):
    """Dotted names of every wsod_d2 module imported by ``path`` (anywhere in the file)."""
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "wsod_d2":
                yield node.module.split(".")
        elif isinstance(node, ast.Import):
            yield from (a.name.split(".") for a in node.names if a.name.startswith("wsod_d2"))
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import (wsod_d2 imports are absolute)")


def _rank(parts):
    top = parts[1] if len(parts) > 1 else ""
    return len(LAYERS) if top in TOP else LAYERS.index(top)


def _family(parts):
    return next((p for p in parts[2:3] if p in FAMILIES), None)


def _violations():
    out = []
    for path in _python_files("wsod_d2"):
        here = _module(path)
        if len(here) == 1:  # the package's __init__ imports data and modeling to register them
            continue
        for target in _wsod_d2_imports(path):
            if len(target) == 1:
                out.append(f"{'.'.join(here)} imports the top-level package wsod_d2")
            elif _rank(target) > _rank(here):
                out.append(f"{'.'.join(here)} imports {'.'.join(target)} (a higher layer)")
            elif target[1] == here[1] and {_family(here), _family(target)} == set(FAMILIES):
                out.append(f"{'.'.join(here)} imports {'.'.join(target)} (the other family)")
    return out


def test_no_upward_or_cross_family_import():
    assert _violations() == []


def test_layer_check_catches_an_upward_import():
    assert _rank(["wsod_d2", "engine", "defaults"]) > _rank(["wsod_d2", "data", "wsod", "build"])
    assert {
        _family(["wsod_d2", "data", "wsol", "build"]),
        _family(["wsod_d2", "data", "wsod"]),
    } == {
        "wsol",
        "wsod",
    }


@pytest.mark.parametrize("folder", ["wsod_d2", "tools", "tests"])
def test_no_file_over_the_limit(folder):
    long = {
        os.path.relpath(p, REPO_ROOT): n
        for p in _python_files(folder)
        if (n := sum(1 for _ in open(p))) > MAX_LINES
    }
    assert long == {}


def test_tests_do_not_edit_sys_path_or_load_scripts():
    pattern = re.compile(r"sys\.path\.(insert|append)|spec_from_file_location")
    offenders = [
        os.path.relpath(p, REPO_ROOT)
        for p in _python_files("tests")
        if pattern.search(open(p).read()) and not p.endswith("test_layout.py")
    ]
    assert offenders == []
