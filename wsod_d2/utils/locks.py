"""An inter-process lock, so ranks of one job generate shared files once."""
import contextlib
import fcntl
import os


@contextlib.contextmanager
def exclusive_lock(path: str):
    """Hold an exclusive flock on ``path + ".lock"`` (parent folders are created)."""
    lock_path = path + ".lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
