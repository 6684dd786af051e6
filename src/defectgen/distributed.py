"""Multi-process training with PyTorch's own engine: `torchrun` + `torch.distributed`.

`torchrun --nproc_per_node K -m defectgen train ...` sets RANK / WORLD_SIZE / LOCAL_RANK;
`init()` joins the process group (gloo on CPU, NCCL on GPU). Gradients are averaged with one
`all_reduce` per model after backward, as stylegan2-ada-pytorch does, rather than through the
DistributedDataParallel wrapper: GAN steps run D inside G's backward, freeze D's parameters
there, and take double-backward R1 penalties — patterns DDP's reducer does not support.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from defectgen import launch
from defectgen.errors import ConfigError, DefectgenError
from defectgen.settings import check_precision

LONG_WAIT = datetime.timedelta(hours=48)  # a whole evaluation's step choice or a set's last write


@dataclass(frozen=True)
class Context:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def parse_device(text: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:1' -> a device this machine has, or a `ConfigError` saying why not."""
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError):
        raise ConfigError(f"--device {text!r}: not a device; use cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {text!r}: defectgen runs on cpu or cuda")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {text!r}: CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    return device


def init(device: str | None = None, timeout: datetime.timedelta | None = None) -> Context:
    """Join the process group when launched by torchrun; a single process otherwise. `timeout`:
    how long a collective may wait (torch's default, 30 min on gloo, unless given): verbs whose
    rank 0 works alone for long stretches (synth's folder, evaluate's step choice) pass
    `LONG_WAIT`."""
    world_size, rank, local_rank = launch.world_size(), launch.rank(), launch.local_rank()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = parse_device(device)
    if resolved.type == "cuda" and resolved.index is None:
        resolved = torch.device("cuda", local_rank)  # torchrun: one GPU per process on this node
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        options = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo", **options)
    return Context(rank=rank, world_size=world_size, device=resolved)


def average_gradients(module: nn.Module, context: Context) -> None:
    """Average the gradients of `module` over all processes (no-op for one process)."""
    if context.world_size == 1:
        return
    params = [p for p in module.parameters() if p.grad is not None]
    if not params:
        return
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for p in params:
        count = p.grad.numel()
        p.grad.copy_(flat[offset : offset + count].view_as(p.grad))
        offset += count


def on_main(context: Context, work):
    """`work()` on rank 0; every rank gets its result, or raises its error (a `DefectgenError` as
    it was, anything else as a DefectgenError naming it). One process: just `work()`."""
    if context.world_size == 1:
        return work()
    payload: list = [None]
    failure = None
    if context.is_main:
        try:
            payload = [("ok", work())]
        except Exception as err:  # noqa: BLE001 - every rank must hear of it, or the others wait forever
            failure = err
            payload = [("error", _portable(err))]
    dist.broadcast_object_list(payload, src=0)
    kind, value = payload[0]
    if failure is not None:
        raise failure
    if kind == "error":
        raise value
    return value


def settle(context: Context, error: BaseException | None) -> None:
    """Wait for every rank to finish its share; raise on every rank when any failed (its own
    error where it failed, one naming the failed ranks elsewhere)."""
    if context.world_size == 1:
        if error is not None:
            raise error
        return
    outcomes: list = [None] * context.world_size
    dist.all_gather_object(outcomes, None if error is None else f"{type(error).__name__}: {error}")
    if error is not None:
        raise error
    failed = [f"rank {rank}: {message}" for rank, message in enumerate(outcomes) if message]
    if failed:
        raise DefectgenError(f"{'; '.join(failed)}; run the same command again to finish the work")


def _portable(err: Exception) -> Exception:
    from defectgen.errors import DefectgenError

    if isinstance(err, DefectgenError):
        try:
            return type(err)(str(err))
        except TypeError:
            pass
    return DefectgenError(f"rank 0: {type(err).__name__}: {err}")


def barrier(context: Context) -> None:
    if context.world_size > 1:
        dist.barrier()


def shutdown(context: Context) -> None:
    if context.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


# --- precision ---------------------------------------------------------------------------------


def resolve_bf16(precision: str, device: torch.device) -> bool:
    """Whether to run under bf16 autocast: `auto` uses it where the hardware supports it."""
    check_precision(precision)
    if precision == "fp32":
        return False
    supported = bf16_supported(device)
    if precision == "bf16" and not supported:
        raise ConfigError(f"precision=bf16 is not supported on {device}; use --set precision=fp32")
    return supported


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # AVX512-BF16 / AMX: about 1.8x faster on FFC layers here; elsewhere bf16 is emulated.
        capability = torch.backends.cpu.get_cpu_capability()
        return capability in ("AVX512", "AVX512_BF16", "AMX") and _cpu_has_bf16()
    return False


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def run_local(work, args: tuple, processes: int) -> None:
    """`work(*args)` in `processes` spawned processes on this machine, joined as one process group
    as `torchrun --standalone --nproc_per_node processes` would join them, the cores shared out
    between them (what `work` returns is dropped: it writes its results). A `DefectgenError`
    raised in any process is raised here with its own message. Each process is killed when this
    one dies (kill -9 included), so an interrupted call leaves nothing running that a rerun would
    race (`tests/test_experiment.py` kills one)."""
    import socket

    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    with socket.socket() as probe:  # a free port for the group's rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = max(1, torch.get_num_threads() // processes)
    context = mp.get_context("spawn")
    answers = context.SimpleQueue()
    try:
        mp.start_processes(
            _local_process,
            args=(work, args, processes, port, threads, answers),
            nprocs=processes,
            join=True,
            start_method="spawn",
        )
    except ProcessException as err:
        failures = _drain(answers)
        errors = [value for kind, value in failures if kind == "error"]
        raise (errors[0] if errors else DefectgenError(f"a worker process failed: {err}")) from None


def _drain(queue) -> list:
    items = []
    while not queue.empty():
        items.append(queue.get())
    return items


def _local_process(rank, work, args, processes, port, threads, answers) -> None:
    _die_with_parent()
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(processes), LOCAL_WORLD_SIZE=str(processes),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(threads)
    try:
        work(*args)
    except DefectgenError as err:  # its message is the user's answer: carry it to the parent
        answers.put(("error", _portable(err)))
        raise


def _die_with_parent() -> None:
    """On Linux, SIGKILL this process when its parent dies (prctl PR_SET_PDEATHSIG). torch's
    spawn asks for SIGINT, which unwinds through `finally` blocks that may wait on the other
    processes; the files a run writes are atomic, so an immediate kill loses nothing."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG
