"""utils/run/distributed.py and the learner's hooks, with real gloo process groups.

The processes are forked by the test (``torch.multiprocessing``, file:// rendezvous), each
builds the learner from the same flags and runs the same meta-steps and evaluation as
one process; in float64 the summed meta-gradients, theta and phi must match one
process within 1e-9, and every process's random generators must end where one
process's do (PLUS noise and per-task step counts included). The whole train.py under
torchrun is tested in tests/test_distributed.py.
"""
import json
import signal
import types

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.conftest import learner_from_flags, tiny_run_flags
from utils import cli
from utils.run.checkpoint import CHECKPOINT, CheckpointError
from utils.run.distributed import Ranks
from utils.run.rng import seed_everything

BASE = ["--dataset", "Strokes", "--hidden_size", "8", "--num_shots_train", "1",
        "--num_shots_test", "2", "--gradient_steps", "2", "--gradient_steps_test", "2",
        "--dont_use_cuda", "--seed", "0"]
CASES = {   # name: (flags, meta-batch size)
    "uneven batch, sampled steps": (["--method", "sparse-maml", "--gradient_step_sampling",
                                     "1"], 3),
    "batch smaller than K": (["--method", "sparse-maml"], 1),
    "PLUS": (["--method", "sparse-maml", "--gradient_mask_plus"], 2),
    "MAML, reference engine": (["--method", "maml", "--engine", "reference"], 2),
}
META_STEPS, EVAL_BATCHES, EVAL_TASKS = 3, 3, 2
pytestmark = pytest.mark.usefixtures("one_thread")


def batch(tasks, seed):
    """A synthetic 5-way 1-shot batch of 28x28 tasks (2 queries per class)."""
    g = torch.Generator().manual_seed(seed)
    return {"train": (torch.randn(tasks, 5, 1, 28, 28, generator=g),
                      torch.arange(5).repeat(tasks, 1)),
            "test": (torch.randn(tasks, 10, 1, 28, 28, generator=g),
                     torch.arange(5).repeat_interleave(2).repeat(tasks, 1))}


def trajectory(ranks, flags, tasks):
    """Meta-steps and an evaluation as ``ranks`` sees them: what each step left in .grad,
    its outputs, the evaluation's accuracies, theta and phi, and the RNG states."""
    learner = learner_from_flags(BASE + flags + ["--batch_size", str(tasks)])
    learner.distribute(ranks)
    theta, phi = learner.parameters()
    record = {"grads": [], "out": []}
    for step in range(META_STEPS):
        seed_everything(step)
        record["out"].append(learner.step(batch(tasks, seed=step)))
        record["grads"].append([None if p.grad is None else p.grad.clone() for p in theta + phi])
    seed_everything(10)
    record["eval"] = learner.evaluate_batches(
        [batch(EVAL_TASKS, seed=20 + i) for i in range(EVAL_BATCHES)], EVAL_BATCHES)
    record["params"] = [p.detach().clone() for p in theta + phi]
    record["rng"] = (torch.get_rng_state(), torch.from_numpy(np.random.get_state()[1].copy()))
    return record


def _rank_main(rank, world, init, out, job, args):
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        torch.save(job(Ranks(rank, world), *args), out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def on_ranks(tmp_path, job, *args, world=2):
    """[job(Ranks(r, world), *args) for each rank r], each in its own gloo process."""
    mp.start_processes(_rank_main, args=(world, f"file://{tmp_path}/rendezvous", tmp_path, job,
                                         args), nprocs=world, start_method="fork")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(world)]


@pytest.mark.parametrize("case", CASES)
def test_two_processes_give_one_process_meta_gradients_float64(case, tmp_path, float64):
    flags, tasks = CASES[case]
    ranks = on_ranks(tmp_path, trajectory, flags, tasks)
    one = trajectory(Ranks(), flags, tasks)
    for got in ranks:
        for step, (grads, expected) in enumerate(zip(got["grads"], one["grads"], strict=True)):
            assert [g is None for g in grads] == [g is None for g in expected]
            for g, e in zip(grads, expected, strict=True):
                if e is not None:     # atol: conv biases before BatchNorm get only noise
                    torch.testing.assert_close(g, e, rtol=1e-9, atol=1e-12,
                                               msg=f"{case}: meta-gradient of step {step}")
        for p, e in zip(got["params"], one["params"], strict=True):
            # atol: Adam turns those biases' noise (1e-16) into steps of lr * 1e-8
            torch.testing.assert_close(p, e, rtol=1e-9, atol=1e-9)
        for out, expected in zip(got["out"], one["out"], strict=True):
            assert out["accuracy"] == expected["accuracy"]
            assert out["loss"] == pytest.approx(expected["loss"], rel=1e-12)
        assert got["eval"] == one["eval"] and len(one["eval"]) == EVAL_BATCHES * EVAL_TASKS
        assert all(torch.equal(a, b) for a, b in zip(got["rng"], one["rng"], strict=True)), \
            "a process's generators left the one-process stream"
    # every process took exactly the same steps
    assert all(torch.equal(a, b) for a, b in zip(ranks[0]["params"], ranks[1]["params"],
                                                 strict=True))


def test_shares_cover_each_task_once_and_batches_go_round_robin():
    for k in (1, 2, 3, 4):
        for n in range(9):
            shares = [Ranks(r, k).share(n) for r in range(k)]
            assert [t for s in shares for t in s] == list(range(n))
            assert max(map(len, shares)) - min(map(len, shares)) <= 1
        assert [[i for i in range(7) if Ranks(r, k).owns(i)] for r in range(k)] == \
               [list(range(r, 7, k)) for r in range(k)]


def _stopping(ranks):
    stop = types.SimpleNamespace(received=signal.SIGTERM if ranks.rank == 1 else None)
    before = ranks.stopping(types.SimpleNamespace(received=None))
    return before, ranks.stopping(stop), stop.received


def test_a_signal_to_one_process_stops_every_process_at_the_same_step(tmp_path):
    for before, agreed, received in on_ranks(tmp_path, _stopping):
        assert before is None
        assert agreed == received == signal.SIGTERM


def _open_folder(ranks, path, resume):
    try:
        with ranks.run_folder(path, resume) as folder:
            return folder.resume
    except CheckpointError as err:
        return str(err), getattr(err, "on_rank0", False)


def test_rank0_opens_the_run_folder_and_the_others_share_its_outcome(tmp_path):
    run = tmp_path / "run"
    assert on_ranks(tmp_path, _open_folder, str(run), False) == [False, False]
    assert run.is_dir()                         # rank 0 created it
    (run / CHECKPOINT).write_bytes(b"")         # now it holds a run
    (message0, shared0), (message1, shared1) = on_ranks(tmp_path, _open_folder, str(run), False)
    assert "already holds a run" in message0 and message1 == message0
    assert (shared0, shared1) == (False, True)  # reported once, by rank 0


TORCHRUN_RANK1 = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1",
                  "TORCHELASTIC_RUN_ID": "launch-a", "TORCHELASTIC_RESTART_COUNT": "0"}


def test_under_torchrun_out_dir_is_required(monkeypatch, capsys):
    for name, value in TORCHRUN_RANK1.items():
        monkeypatch.setenv(name, value)
    flags = tiny_run_flags("x")[:-2]            # without --out_dir x
    with pytest.raises(SystemExit) as exit_:
        cli.resolve(cli.parse_args(flags))
    assert exit_.value.code == 2 and "give --out_dir" in capsys.readouterr().err
    assert cli.resolve(cli.parse_args(tiny_run_flags("x"))).learner.device == "cpu"


@pytest.mark.parametrize("restarts, launch, resumes", [
    ("1", "launch-a", True),        # torchrun restarted this launch: continue its run
    ("0", "launch-a", False),       # the first attempt
    ("1", "launch-b", False)])      # the folder holds another launch's run: refused later
def test_a_restarted_group_resumes_only_its_own_launch(monkeypatch, tmp_path, restarts, launch,
                                                       resumes):
    for name, value in {**TORCHRUN_RANK1, "TORCHELASTIC_RESTART_COUNT": restarts,
                        "TORCHELASTIC_RUN_ID": launch}.items():
        monkeypatch.setenv(name, value)
    run = tmp_path / "run"
    run.mkdir()
    (run / CHECKPOINT).write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"args": {"seed": 7}, "_meta": {
        "world_size": 2, "torchrun_run_id": "launch-a"}}))
    config = cli.resolve(cli.parse_args([str(f) for f in tiny_run_flags(run)] + ["--seed", "-1"]))
    assert config.resume == resumes
    if resumes:
        assert config.seed == 7         # the recorded seed, on every process
