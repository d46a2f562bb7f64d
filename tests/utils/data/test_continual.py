"""The continual benchmarks' data: MNIST read from torchvision's files and downloaded from
a (local, fabricated) mirror, clear errors when absent, the task constructions, and the
OSAKA streams' switches, modes and state."""
import functools
import http.server
import threading

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd

from tests.continual_data import write_fake_mnist, write_fake_omniglot
from utils.data.continual import ContinualDataConfig, task_sequence, torchvision_images
from utils.data.loaders import DataUnavailable
from utils.data.osaka import osaka_stream


def test_mnist_is_read_from_torchvisions_files(tmp_path):
    written = write_fake_mnist(tmp_path)
    x, y = torchvision_images("MNIST", str(tmp_path), True, False)
    assert np.array_equal(x.numpy(), written["train"][0])
    assert np.array_equal(y.numpy(), written["train"][1])


def test_missing_mnist_names_the_folder_and_the_files(tmp_path):
    with pytest.raises(DataUnavailable) as err:
        torchvision_images("MNIST", str(tmp_path), True, False)
    message = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "--download" in message


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A loopback HTTP server holding fabricated .gz MNIST files, as torchvision's mirror
    (checksums off: the files are fabricated)."""
    served = tmp_path / "served"
    written = write_fake_mnist(served, gz=True)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(served / "MNIST" / "raw"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(tvd.MNIST, "mirrors", [f"http://127.0.0.1:{server.server_port}/"])
    monkeypatch.setattr(tvd.MNIST, "resources", [(f, None) for f, _ in tvd.MNIST.resources])
    yield written
    server.shutdown()


def test_download_fetches_and_reads_mnist(mirror, tmp_path):
    root = tmp_path / "data"
    x, y = torchvision_images("MNIST", str(root), False, True)
    assert np.array_equal(x.numpy(), mirror["test"][0])
    assert (root / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_a_failed_download_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(tvd.MNIST, "mirrors", ["http://127.0.0.1:9/"])    # nothing listens
    with pytest.raises(DataUnavailable, match="download failed"):
        torchvision_images("MNIST", str(tmp_path), True, True)


def test_rotation_and_permutation_tasks(tmp_path):
    write_fake_mnist(tmp_path)
    config = ContinualDataConfig("mnist-rotations", data_folder=str(tmp_path), num_tasks=4,
                                 samples_per_task=30)
    rot = task_sequence(config, seed=0)
    for t, angle in enumerate(rot.params):          # one angle per 45-degree stratum
        assert 45 * t <= angle < 45 * (t + 1)
    x, y = rot.train_set(2)
    assert x.shape == (30, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() <= x.max() <= 1
    assert len(rot.test_set(0)[1]) == 100            # the whole test set for every task
    perm = task_sequence(ContinualDataConfig("mnist-permutations", data_folder=str(tmp_path),
                                             num_tasks=3, samples_per_task=30), seed=0)
    base, _ = perm.test_set(0)
    # a pixel permutation keeps every image's pixel values, only their order changes
    raw = perm.test_x.float().flatten(1) / 255
    assert torch.equal(base.flatten(1).sort(1).values, raw.sort(1).values)
    assert not torch.equal(perm.params[0], perm.params[1])
    again = task_sequence(ContinualDataConfig("mnist-permutations", data_folder=str(tmp_path),
                                              num_tasks=3, samples_per_task=30), seed=0)
    assert torch.equal(again.train_set(1)[0], perm.train_set(1)[0])       # seeded


def test_digits_benchmark_is_offline_and_split_per_class():
    seq = task_sequence(ContinualDataConfig("digits-rotations", num_tasks=2), seed=1)
    assert seq.input_shape == (1, 8, 8) and seq.num_classes == 10
    counts = torch.bincount(seq.test_y, minlength=10)
    assert counts.min() >= 50                       # 30 % of each class (about 180 images)
    assert len(seq.train_y) + len(seq.test_y) == 1797


def stream_config(root, **kw):
    values = dict(benchmark="osaka-omniglot", data_folder=str(root), pretrain_classes=20,
                  val_classes=5, prob_statio=0.8, stream_steps=400, num_ways=5, num_shots=2,
                  num_queries=3)
    return ContinualDataConfig(**{**values, **kw})


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory):
    return write_fake_omniglot(tmp_path_factory.mktemp("omniglot"), classes=(30, 6, 6))


def test_stream_switches_modes_and_batches(omniglot):
    stream = osaka_stream(stream_config(omniglot), seed=0)
    assert stream.modes == ["omniglot", "unseen-alphabets", "rotated"]
    assert [len(m) for m in stream.images] == [25, 12, 12]
    steps = [stream.next() for _ in range(400)]
    switches = [s for _, _, s, _ in steps]
    assert switches[0] is False                     # the start is no switch
    # a switch happens with probability 1 - prob_statio = 0.2 per step
    assert 50 <= sum(switches) <= 110
    x, y, _, _ = steps[0]
    assert x.shape == (10, 1, 28, 28) and y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    modes = [m for _, _, _, m in steps]
    assert set(modes) == set(stream.modes)
    for (_, _, switched, mode), (_, _, _, before) in zip(steps[1:], steps[:-1], strict=True):
        assert switched or mode == before           # the mode only changes at a switch


def test_stream_state_round_trip(omniglot):
    a = osaka_stream(stream_config(omniglot), seed=3)
    for _ in range(7):
        a.next()
    state = a.state_dict()
    rest = [a.next() for _ in range(5)]
    b = osaka_stream(stream_config(omniglot), seed=99)
    b.load_state_dict(state)
    for (x1, y1, s1, m1), (x2, y2, s2, m2) in zip(rest, [b.next() for _ in range(5)],
                                                  strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2) and s1 == s2 and m1 == m2


def test_pretraining_tasks_use_disjoint_halves(omniglot):
    stream = osaka_stream(stream_config(omniglot), seed=0)
    xs, ys, xq, yq = stream.tasks("train", 0).sample(1)[0]
    assert xs.shape == (10, 1, 28, 28) and xq.shape == (15, 1, 28, 28)
    assert stream.pretrain.shape[0] == 20 and stream.val.shape[0] == 5


def test_stream_errors(tmp_path, omniglot):
    with pytest.raises(DataUnavailable, match="data.hdf5"):
        osaka_stream(stream_config(tmp_path), seed=0)
    with pytest.raises(DataUnavailable, match="exceed"):
        osaka_stream(stream_config(omniglot, pretrain_classes=30), seed=0)
    with pytest.raises(DataUnavailable, match="mode_probs"):
        osaka_stream(stream_config(omniglot, mode_probs=(0.5, 0.5)), seed=0)


def test_full_osaka_stream_reads_mnist_and_fashion_mnist(tmp_path):
    write_fake_omniglot(tmp_path, classes=(30, 6, 6))
    write_fake_mnist(tmp_path, "MNIST")
    write_fake_mnist(tmp_path, "FashionMNIST", seed=1)
    stream = osaka_stream(stream_config(tmp_path, benchmark="osaka"), seed=0)
    assert stream.modes == ["omniglot", "mnist", "fashion-mnist"]
    assert [tuple(m.shape) for m in stream.images][1:] == [(10, 20, 28, 28)] * 2
