"""Every key that add_wsod_config adds is read somewhere in the code (no dead flags)."""
import glob
import os
import re

from detectron2.config import CfgNode, get_cfg

from wsod_d2 import add_wsod_config
from wsod_d2.testing import REPO_ROOT


def leaf_keys(node, prefix=""):
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, CfgNode):
            yield from leaf_keys(value, path + ".")
        else:
            yield path


def test_every_added_key_is_read():
    base = set(leaf_keys(get_cfg()))
    cfg = get_cfg()
    add_wsod_config(cfg)
    added = sorted(set(leaf_keys(cfg)) - base)
    assert len(added) > 20
    sources = [
        p
        for pattern in ("wsod_d2/**/*.py", "tools/*.py")
        for p in glob.glob(os.path.join(REPO_ROOT, pattern), recursive=True)
        if os.sep + os.path.join("wsod_d2", "config") + os.sep not in p
    ]
    code = "\n".join(open(p).read() for p in sources)
    leaves = [k.rsplit(".", 1)[1] for k in added]

    def is_read(key):
        # cfg.<...>.<PARENT>.<LEAF>, or node.<LEAF> through an alias when no other added key
        # has that leaf.
        leaf = key.rsplit(".", 1)[1]
        if ".".join(key.split(".")[-2:]) in code:
            return True
        return leaves.count(leaf) == 1 and re.search(rf"\.{leaf}\b", code) is not None

    unread = [k for k in added if not is_read(k)]
    assert not unread, f"config keys nothing reads: {unread}"
