"""detectron2's ``launch()``, also for several CPU processes (gloo): detectron2 0.6's own
version asserts CUDA and uses NCCL whenever more than one process is asked for."""
import logging
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from detectron2.engine import launch as d2_launch
from detectron2.utils import comm

DEFAULT_TIMEOUT = timedelta(minutes=30)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(
    main_func,
    num_processes_per_machine: int,
    num_machines: int = 1,
    machine_rank: int = 0,
    dist_url: str = None,
    args=(),
    timeout=DEFAULT_TIMEOUT,
    use_cuda: bool = None,
):
    """Run ``main_func(*args)`` in ``num_processes_per_machine`` processes on each machine.

    ``use_cuda`` (default: whether CUDA is available) picks detectron2's GPU launch (NCCL, one
    GPU per process); otherwise the processes run on the CPU and talk through gloo.
    """
    world_size = num_machines * num_processes_per_machine
    if use_cuda is None:
        use_cuda = torch.cuda.is_available()
    if use_cuda or world_size == 1:
        return d2_launch(
            main_func,
            num_processes_per_machine,
            num_machines,
            machine_rank,
            dist_url,
            args,
            timeout,
        )
    if dist_url == "auto":
        if num_machines != 1:
            raise ValueError("--dist-url auto works on one machine only; give tcp://HOST:PORT")
        dist_url = f"tcp://127.0.0.1:{_free_port()}"
    mp.spawn(
        _cpu_worker,
        nprocs=num_processes_per_machine,
        args=(
            main_func,
            world_size,
            num_processes_per_machine,
            machine_rank,
            dist_url,
            args,
            timeout,
        ),
        daemon=False,
    )


def _cpu_worker(
    local_rank, main_func, world_size, num_per_machine, machine_rank, dist_url, args, timeout
):
    rank = machine_rank * num_per_machine + local_rank
    try:
        dist.init_process_group(
            backend="gloo", init_method=dist_url, world_size=world_size, rank=rank, timeout=timeout
        )
    except Exception:
        logging.getLogger(__name__).error(f"Process group URL: {dist_url}")
        raise
    # detectron2's comm.get_local_rank() reads this group, as its own launch sets it.
    for machine in range(world_size // num_per_machine):
        group = dist.new_group(
            list(range(machine * num_per_machine, (machine + 1) * num_per_machine))
        )
        if machine == machine_rank:
            comm._LOCAL_PROCESS_GROUP = group
    comm.synchronize()
    main_func(*args)
