"""Memory of processes as Linux accounts it, and child processes run under a memory guard, for
the memory benchmarks (no psutil: /proc is read directly)."""

import json
import os
import resource
import signal
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional

from wsod_d2.utils.env import REPO_ROOT

__all__ = ["available_gib", "memory", "run_guarded", "wait_for_all"]

MIB = 1024**2
GIB = 1024**3
# Seconds between two looks at the machine's available memory while children run.
POLL_S = 0.5
# A benchmark child's OOM score adjustment: the highest, so the kernel kills it first.
OOM_SCORE_ADJ = 1000


def _kib_fields(path: str) -> Dict[str, int]:
    """{field: bytes} of a /proc file of "Name:   123 kB" lines."""
    out = {}
    with open(path) as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[name.strip()] = int(parts[0]) * 1024
    return out


def memory(pid: Optional[int] = None) -> Dict[str, float]:
    """
    MiB of process ``pid`` (this one when None): ``uss`` (Private_Clean + Private_Dirty: pages
    no other process maps, which includes file pages only this process has touched), ``anon``
    (anonymous memory: heap, arrays; what a process holds that the kernel cannot drop),
    ``pss`` (and its ``pss_anon`` / ``pss_file`` parts), ``rss`` and ``peak_rss`` (VmHWM).
    """
    where = f"/proc/{pid or 'self'}"
    rollup = _kib_fields(f"{where}/smaps_rollup")
    status = _kib_fields(f"{where}/status")
    return {
        "uss": (rollup["Private_Clean"] + rollup["Private_Dirty"]) / MIB,
        "anon": rollup["Anonymous"] / MIB,
        "pss": rollup["Pss"] / MIB,
        # PSS split: anonymous memory, and mapped files (libraries, a store's pages: page cache
        # the kernel can drop, shared with every process that maps it)
        "pss_anon": rollup["Pss_Anon"] / MIB,
        "pss_file": rollup["Pss_File"] / MIB,
        "rss": rollup["Rss"] / MIB,
        "peak_rss": status["VmHWM"] / MIB,
    }


def available_gib() -> float:
    """MemAvailable of the machine, GiB."""
    return _kib_fields("/proc/meminfo")["MemAvailable"] / GIB


def wait_for_all(directory: str, stage: str, rank: int, world: int, timeout_s: float) -> None:
    """A barrier of ``world`` processes through marker files in ``directory``."""
    open(os.path.join(directory, f"{stage}.{rank}"), "w").close()
    deadline = time.monotonic() + timeout_s
    while (
        sum(os.path.exists(os.path.join(directory, f"{stage}.{r}")) for r in range(world)) < world
    ):
        if time.monotonic() > deadline:
            raise TimeoutError(f"barrier {stage!r}: not all {world} processes arrived")
        time.sleep(0.05)


def run_guarded(
    command: List[str],
    specs: List[Dict[str, Any]],
    *,
    min_available_gib: float,
    timeout_s: float,
    max_data_gib: float,
) -> List[Dict[str, Any]]:
    """
    Run ``command + [json spec]`` (e.g. ``[sys.executable, "-m", module]``) once per spec, all
    at once, each in its own process group (its DataLoader workers with it), and return the
    JSON object each prints last.

    Memory is bounded three ways, so that a measurement that does not fit ends instead of the
    machine: each child's heap and private mappings are limited to ``max_data_gib``
    (RLIMIT_DATA: past it an allocation raises MemoryError; the store's read-only file mappings
    do not count), its OOM score is raised so that the kernel kills it before another job, and
    the whole set is killed when the machine's available memory falls under
    ``min_available_gib``. Such a child's result is ``{"killed": "why"}``; one that fails
    otherwise raises RuntimeError.
    """
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    limit = int(max_data_gib * GIB)
    procs = []
    for spec in specs:
        proc = subprocess.Popen(
            [*command, json.dumps(spec)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        # set from here rather than in a preexec_fn, which is unsafe in a threaded parent
        resource.prlimit(proc.pid, resource.RLIMIT_DATA, (limit, limit))
        with open(f"/proc/{proc.pid}/oom_score_adj", "w") as f:
            f.write(str(OOM_SCORE_ADJ))
        procs.append(proc)
    outputs: List[Any] = [None] * len(procs)

    def drain(i):  # read the pipes as the child writes, or a full pipe would stall it
        outputs[i] = procs[i].communicate()

    threads = [threading.Thread(target=drain, args=(i,), daemon=True) for i in range(len(procs))]
    for t in threads:
        t.start()
    reason, killed, start = None, set(), time.monotonic()
    while any(p.poll() is None for p in procs):
        if reason is None:
            if available_gib() < min_available_gib:
                reason = f"killed: available memory fell under {min_available_gib:g} GiB"
            elif time.monotonic() - start > timeout_s:
                reason = f"killed: over {timeout_s:g} s"
            elif any(p.returncode not in (None, 0) for p in procs):
                reason = "killed: another process of the run failed"  # it would wait for it
            for i, p in enumerate(procs):
                if reason and p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    killed.add(i)
        time.sleep(POLL_S)
    for t in threads:
        t.join()
    return [
        {"killed": reason} if i in killed else _result(p, *outputs[i], max_data_gib)
        for i, p in enumerate(procs)
    ]


def _result(proc: subprocess.Popen, out: str, err: str, max_data_gib: float) -> Dict[str, Any]:
    """The JSON object a child printed last, or why it has none."""
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    if "MemoryError" in err:
        return {"killed": f"out of memory: over the {max_data_gib:.1f} GiB limit of a process"}
    if proc.returncode == -signal.SIGKILL:
        return {"killed": "killed by the kernel (out of memory)"}
    raise RuntimeError(f"benchmark child failed (exit {proc.returncode}):\n{err[-3000:]}")
