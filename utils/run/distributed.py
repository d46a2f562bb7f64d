"""One run over several processes (torchrun), with torch.distributed directly.

``torchrun --nproc_per_node K train.py ...`` starts K copies of train.py with WORLD_SIZE,
RANK and LOCAL_RANK set. Every process builds the same learner and the same task loaders
from the same seed, so all of them draw identical meta-batches. Process r adapts its
contiguous share of each meta-batch's tasks (``Ranks.share``); the meta-gradients are
summed over the processes (the query losses are summed over the meta-batch, as in one
process), and every process takes the same optimizer step, so theta and phi stay the
same everywhere. A meta-batch of B < K tasks, or one that K does not divide, leaves some
processes with fewer tasks or none: they contribute zeros. Evaluation batches go round
robin (batch i to rank i % K) and their per-task accuracies are gathered back into
one-process order. Only rank 0 writes files and prints to stdout.

Every process consumes its random generators exactly as one process would (the learner
draws the PLUS noise of the tasks it skips, see ``MetaLearner.skip_draws``), so rank 0's
checkpointed RNG states hold for all. torchrun restarts the whole group after a failure
(``--max-restarts``); ``restarted_run`` lets the new group continue from the checkpoint.

Without torchrun, or with one process, ``Ranks()`` is rank 0 of 1: no process group, and
every method returns at once. Backends: gloo for CPU tensors, NCCL for CUDA tensors.
"""
import contextlib
import dataclasses
import json
import os
import sys

import torch
import torch.distributed as dist

from maml.meta_learner import NonFiniteError
from utils.run.checkpoint import CHECKPOINT
from utils.run.run_folder import CONFIG, RunFolder

__all__ = ["Ranks", "local_rank", "ranks", "restarted_run", "world_size"]


def world_size():
    """Number of processes of the run (torchrun's WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def local_rank():
    """This process's index on its node (torchrun's LOCAL_RANK; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def torchrun_run_id():
    """torchrun's id of this launch (the same for every process and every restart), or None."""
    return os.environ.get("TORCHELASTIC_RUN_ID")


def restarted_run(out_dir):
    """Whether torchrun restarted this group after a failure and ``out_dir`` holds the
    checkpoint of the same launch (its config.json records this launch's id): the run
    then continues as with --resume. A folder of another run is never taken over."""
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) == 0 or out_dir is None:
        return False
    if not os.path.isfile(os.path.join(out_dir, CHECKPOINT)):
        return False
    try:
        with open(os.path.join(out_dir, CONFIG), encoding="utf-8") as f:
            meta = json.load(f).get("_meta")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(meta, dict) and meta.get("torchrun_run_id") == torchrun_run_id()


class Ranks:
    """The processes of one run, as this process sees them: ``rank`` of ``world_size``."""

    def __init__(self, rank=0, world_size=1):
        self.rank, self.world_size = rank, world_size

    @property
    def is_main(self):
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def several(self):
        """More than one process: the collectives below do something."""
        return self.world_size > 1

    # --- meta-training: each process adapts a share of the meta-batch -------------------
    def share(self, n_tasks):
        """The tasks of an ``n_tasks`` meta-batch this process adapts: a contiguous range,
        sizes differing by at most one; empty on the last ranks when n_tasks < K."""
        k, r = self.world_size, self.rank
        return range(r * n_tasks // k, (r + 1) * n_tasks // k)

    def sum_meta_gradients(self, params, loss, accuracies, share, n_tasks):
        """Sum every ``.grad`` of ``params`` (theta and phi) over the processes, in place.

        One all-reduce carries the gradients (zeros where a process has none), one flag
        per tensor (a gradient stays None only where it is None on every process, as in
        one process: an optimizer skips such a tensor), the summed query ``loss`` (None:
        this process had no task) and the query ``accuracies`` of the tasks in ``share``
        (0-dim tensors) at their places in the meta-batch. Returns (summed query loss,
        [query accuracy of each of the ``n_tasks`` tasks]) on every process.
        """
        device, dtype = params[0].device, params[0].dtype
        parts = [p.grad.reshape(-1).to(dtype) if p.grad is not None
                 else torch.zeros(p.numel(), device=device, dtype=dtype) for p in params]
        has = torch.tensor([p.grad is not None for p in params], device=device, dtype=dtype)
        total = (loss.detach().reshape(1).to(dtype) if loss is not None
                 else torch.zeros(1, device=device, dtype=dtype))
        placed = torch.zeros(n_tasks, device=device, dtype=dtype)
        if accuracies:
            placed[share.start:share.stop] = torch.stack(accuracies).to(dtype)
        flat = torch.cat(parts + [has, total, placed])
        dist.all_reduce(flat)
        sizes = [p.numel() for p in params] + [len(params), 1, n_tasks]
        *grads, has, total, placed = flat.split(sizes)
        for p, grad, present in zip(params, grads, has.tolist(), strict=True):
            p.grad = grad.view(p.shape) if present else None
        acc_dtype = accuracies[0].dtype if accuracies else torch.float32
        return total[0], list(placed.to(acc_dtype).unbind())

    # --- evaluation: whole batches go round robin ---------------------------------------
    def owns(self, batch_index):
        """Whether this process evaluates evaluation batch ``batch_index`` (i % K == rank)."""
        return batch_index % self.world_size == self.rank

    def gather_batches(self, mine):
        """Per-task results of every process's batches, in one-process order.

        mine: [1-dim tensor per batch this process evaluated, in loader order]. Returns a
        list of floats (batch 0's tasks, then batch 1's, ...) on every process.
        """
        local = (torch.cat(mine).tolist(), [len(t) for t in mine]) if mine else ([], [])
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, local)
        per_rank = []
        for values, lengths in gathered:
            batches, start = [], 0
            for n in lengths:
                batches.append(values[start:start + n])
                start += n
            per_rank.append(batches)
        out = []
        for i in range(sum(len(batches) for batches in per_rank)):
            out += per_rank[i % self.world_size][i // self.world_size]
        return out

    # --- agreement, files and messages --------------------------------------------------
    def stopping(self, stop):
        """The stop signal any process has received (``stop``: its StopSignals), or None;
        the same answer on every process, so all stop at the same meta-step. A process
        that received none takes the others' (``stop.received`` is set)."""
        if self.several:
            flag = torch.tensor([stop.received or 0])
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            if flag.item() and not stop.received:
                stop.received = int(flag.item())
        return stop.received

    def agree(self, config):
        """``config`` (a RunConfig) with rank 0's seed (``--seed -1`` draws one per process)."""
        if not self.several:
            return config
        seed = [config.seed]
        dist.broadcast_object_list(seed, src=0)
        return dataclasses.replace(config, seed=seed[0], flags={**config.flags, "seed": seed[0]})

    @contextlib.contextmanager
    def run_folder(self, path, resume):
        """``RunFolder(path, resume)``, opened (checked, created, locked) by rank 0 only;
        the other processes get rank 0's outcome: its ``resume``, or its error, raised
        with ``error.on_rank0 = True`` (rank 0 reports it)."""
        if not self.several:
            with RunFolder(path, resume) as folder:
                yield folder
            return
        folder, outcome = RunFolder(path, resume), [None]
        if self.is_main:
            try:
                folder.__enter__()
                outcome[0] = folder.resume
            except Exception as err:
                outcome[0] = err
                dist.broadcast_object_list(outcome, src=0)
                raise
        dist.broadcast_object_list(outcome, src=0)
        if isinstance(outcome[0], Exception):
            outcome[0].on_rank0 = True
            raise outcome[0]
        folder.resume = outcome[0]
        try:
            yield folder
        finally:
            if self.is_main:
                folder.__exit__(None, None, None)

    def barrier(self):
        if self.several:
            dist.barrier()

    def metadata(self):
        """What config.json records about the processes: their number and torchrun's id."""
        return {"world_size": self.world_size, "torchrun_run_id": torchrun_run_id()}

    def report(self, message, error):
        """Print ``message`` about ``error`` on stderr: rank 0 always; another rank, prefixed
        with its rank, only an error of its own (e.g. data missing on its node), not a
        stop, a non-finite step (the same summed values everywhere) or rank 0's error."""
        shared = (isinstance(error, (KeyboardInterrupt, NonFiniteError))
                  or getattr(error, "on_rank0", False))
        if self.is_main:
            print(message, file=sys.stderr)
        elif not shared:
            print(f"rank {self.rank}: {message}", file=sys.stderr)


def _store(size):
    """The rendezvous store of this group, or None for torch's default (env://).

    torchrun's agent serves one store for all its restarts of the group
    (TORCHELASTIC_USE_AGENT_STORE), and the process group's keys (gloo's and NCCL's
    addresses) are the same in every attempt: a restarted rank could read the address of
    the process it replaces and fail to connect (pytorch/pytorch#135712). Each attempt
    gets keys of its own here. The restart count is per node, so on several nodes set
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 (a new store per attempt; README, "Several GPUs").
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          world_size=size, is_master=False)
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"sparse-maml/attempt_{attempt}", store)


@contextlib.contextmanager
def ranks():
    """The ``Ranks`` of this run: torchrun's process group (joined here, left on exit), or
    this process alone. Processes other than rank 0 print nothing to stdout."""
    size = world_size()
    if size == 1:
        yield Ranks()
        return
    rank = int(os.environ["RANK"])
    if torch.cuda.is_available() and local_rank() < torch.cuda.device_count():
        torch.cuda.set_device(local_rank())     # NCCL's communicator on this rank's GPU
    # gloo carries CPU tensors (and --dont_use_cuda runs), NCCL the CUDA ones
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend, store=_store(size), rank=rank, world_size=size)
    stdout = sys.stdout
    try:
        if rank != 0:
            sys.stdout = open(os.devnull, "w")
        yield Ranks(rank, size)
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
            sys.stdout = stdout
        dist.destroy_process_group()

