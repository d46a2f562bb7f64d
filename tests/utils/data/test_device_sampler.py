"""DeviceTaskLoader (utils/data/device_sampler.py): batch layout, task validity, the task
distribution of torchmeta's loader, reproducibility under torch.manual_seed, classes
of different sizes, and the real Omniglot (rotated classes included). CPU only.

Drawn images are identified against a reference built straight from the torchmeta
class dataset (not from the loader's own tensor), so a wrong offset or gather shows.
"""
import itertools

import pytest
import torch

from utils.data.device_sampler import DeviceTaskLoader
from utils.data.loaders import meta_dataset
from utils.data.torchmeta_compat import (Categorical, ClassDataset, ClassSplitter,
                                         CombinationMetaDataset, Dataset)

N, K, Q = 3, 2, 3          # 3 of the fake MiniImageNet's 6 classes: sampling must choose


class Reference:
    """Every image of a torchmeta meta-dataset, read straight from its class dataset."""

    def __init__(self, ds):
        images, owner, index = [], [], []
        for c in range(len(ds.dataset)):
            class_data = ds.dataset[c]
            for i in range(len(class_data)):
                images.append(class_data[i][0])
                owner.append(c)
                index.append(i)
        self.images = torch.stack(images)                   # [total, C, H, W]
        self.owner, self.index = torch.tensor(owner), torch.tensor(index)
        # 16 pixels fingerprint these noise images (uniqueness checked), so matching
        # many drawn images stays cheap; torch.equal then confirms whole images.
        self.probe = torch.randperm(self.images[0].numel(),
                                    generator=torch.Generator().manual_seed(0))[:16]
        self.prints = self.images.flatten(1)[:, self.probe]
        assert len({tuple(r.tolist()) for r in self.prints}) == len(self.prints)

    def identify(self, x, exact=True):
        """Reference row of each image of x [..., C, H, W]; each must match exactly one."""
        prints = x.flatten(-3)[..., self.probe].reshape(-1, len(self.probe))
        matches = (prints[:, None] == self.prints[None]).all(-1)
        assert (matches.sum(1) == 1).all(), "a drawn image matches no dataset image"
        rows = matches.float().argmax(1)
        if exact:
            assert torch.equal(x.reshape(len(rows), *x.shape[-3:]), self.images[rows])
        return rows.view(x.shape[:-3])


@pytest.fixture(scope="module")
def mini(fake_miniimagenet):
    ds = meta_dataset("MiniImagenet", "train", fake_miniimagenet, N, K, Q)
    return ds, Reference(ds)


def test_batch_shapes_dtypes_and_labels(mini):
    ds, ref = mini
    loader = DeviceTaskLoader(ds, batch_size=4, device="cpu", progress=False)
    assert loader.images.shape == (6 * 20, 3, 84, 84) and loader.num_classes == 6
    assert torch.equal(loader.images, ref.images)
    batch = next(iter(loader))
    assert set(batch) == {"train", "test"}
    for name, per_class in (("train", K), ("test", Q)):
        x, y = batch[name]
        assert x.shape == (4, N * per_class, 3, 84, 84) and x.dtype == torch.float32
        assert y.shape == (4, N * per_class) and y.dtype == torch.int64
        assert x.device == y.device == torch.device("cpu")
        for task in y:     # class-major: each label repeated per_class times in a row
            blocks = task.view(N, per_class)
            assert (blocks == blocks[:, :1]).all()
            assert sorted(blocks[:, 0].tolist()) == list(range(N))
    # The support and query of a task use the same label order (same classes).
    assert torch.equal(batch["train"][1][:, ::K], batch["test"][1][:, ::Q])


def test_tasks_are_valid(mini):
    ds, ref = mini
    owner = ref.owner
    loader = DeviceTaskLoader(ds, batch_size=8, device="cpu", progress=False)
    stream = iter(loader)
    for _ in range(5):
        batch = next(stream)
        support = ref.identify(batch["train"][0])      # [B, N*K] reference rows
        query = ref.identify(batch["test"][0])
        for b in range(8):
            rows = torch.cat([support[b], query[b]])
            assert len(set(rows.tolist())) == N * (K + Q), "an image repeats in a task"
            labels = torch.cat([batch["train"][1][b], batch["test"][1][b]])
            label_class = {}
            for row, label in zip(rows.tolist(), labels.tolist()):
                assert label_class.setdefault(label, owner[row].item()) == owner[row].item()
            assert len(set(label_class.values())) == N, "a class appears twice in a task"


def chi_square(counts):
    expected = counts.sum() / counts.numel()
    return (((counts - expected) ** 2) / expected).sum().item()


def test_task_distribution(mini):
    ds, ref = mini
    owner, index = ref.owner, ref.index
    loader = DeviceTaskLoader(ds, batch_size=50, device="cpu", progress=False)
    torch.manual_seed(0)
    stream = iter(loader)
    classes, first_class = torch.zeros(6), torch.zeros(6)
    class_label = torch.zeros(6, N)
    support_image, query_image = torch.zeros(6, 20), torch.zeros(6, 20)
    for _ in range(40):                                        # 2,000 tasks
        batch = next(stream)
        for name, counts in (("train", support_image), ("test", query_image)):
            rows = ref.identify(batch[name][0], exact=False).flatten()
            counts.index_put_((owner[rows], index[rows]), torch.ones(len(rows)), accumulate=True)
        rows = ref.identify(batch["train"][0][:, ::K], exact=False).flatten()  # 1 per class
        classes += torch.bincount(owner[rows], minlength=6)
        # torchmeta orders a task's classes randomly (class-major layout), not by id.
        first_class += torch.bincount(owner[rows].view(-1, N)[:, 0], minlength=6)
        class_label.index_put_((owner[rows], batch["train"][1][:, ::K].flatten()),
                               torch.ones(len(rows)), accumulate=True)
    # Chi-square bounds far in the tails (degrees of freedom 5, 5, 17, 119); using only
    # the first N classes, a fixed label per class, or only the first K+Q images of a
    # class, or classes in id order within a task gives values in the hundreds or more.
    assert classes.sum() == 2000 * N and chi_square(classes) < 30
    assert chi_square(first_class) < 30
    assert chi_square(class_label) < 60
    assert chi_square(support_image) < 220 and chi_square(query_image) < 220


def test_reproducible_under_manual_seed(mini):
    ds, _ = mini
    loader = DeviceTaskLoader(ds, batch_size=4, device="cpu", progress=False)

    def first_two(seed):
        torch.manual_seed(seed)
        stream = iter(loader)
        return [next(stream), next(stream)]

    def same(a, b):
        return all(torch.equal(u, v) for name in ("train", "test")
                   for u, v in zip(a[name], b[name]))

    a, b, c = first_two(3), first_two(3), first_two(4)
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert not same(a[0], c[0]) and not same(a[0], a[1])


class Tagged(Dataset):
    """One class of ``size`` 1x2x2 images, each filled with 100 * class + index."""

    def __init__(self, index, size, target_transform=None):
        super().__init__(index, target_transform=target_transform)
        self.size = size

    def __len__(self):
        return self.size

    def __getitem__(self, i):
        target = self.index if self.target_transform is None else \
            self.target_transform(self.index)
        return torch.full((1, 2, 2), 100.0 * self.index + i), target


class TaggedClasses(ClassDataset):
    def __init__(self, sizes):
        super().__init__(meta_split="train")
        self.sizes = sizes

    @property
    def num_classes(self):
        return len(self.sizes)

    def __getitem__(self, c):
        return Tagged(c, self.sizes[c], target_transform=self.get_target_transform(c))


def tagged(sizes, num_ways=2, shots=1, queries=2):
    return CombinationMetaDataset(
        TaggedClasses(sizes), num_ways, target_transform=Categorical(num_ways),
        dataset_transform=ClassSplitter(shuffle=True, num_train_per_class=shots,
                                        num_test_per_class=queries))


def test_classes_of_different_sizes():
    sizes = [3, 7, 4, 10]
    loader = DeviceTaskLoader(tagged(sizes), batch_size=64, device="cpu", progress=True)
    assert loader.counts.tolist() == sizes and loader.offsets.tolist() == [0, 3, 10, 14]
    torch.manual_seed(0)
    seen = set()
    for batch in itertools.islice(loader, 30):
        tags = [x[..., 0, 0, 0].long() for x, _ in batch.values()]     # [B, N*K], [B, N*Q]
        labels = torch.cat([y for _, y in batch.values()], dim=1)
        tags = torch.cat(tags, dim=1)
        seen.update(tags.flatten().tolist())
        # An image read past its class's end would belong to the next class, so a
        # label would then cover two classes.
        for task_tags, task_labels in zip(tags // 100, labels):
            for label in range(2):
                assert task_tags[task_labels == label].unique().numel() == 1
    drawn = {(v // 100, v % 100) for v in seen}
    assert drawn == {(c, i) for c, n in enumerate(sizes) for i in range(n)}, \
        "images past a class's size drawn, or some image never drawn"


def test_too_small_class_is_rejected():
    with pytest.raises(ValueError, match="fewer images than K \\+ Q = 1 \\+ 2"):
        DeviceTaskLoader(tagged([3, 2, 5]), batch_size=2, device="cpu", progress=False)
    with pytest.raises(ValueError, match="5-way"):
        DeviceTaskLoader(tagged([3, 3], num_ways=5), batch_size=2, device="cpu",
                         progress=False)


def test_real_omniglot_train_split(omniglot_root):
    # The train split (1028 characters x 4 rotations x 20 images) loads in ~15-18 s on
    # 2 CPU cores, the bulk of this file's runtime; kept because it is the split that
    # training uses, with rotated copies as extra classes ('test' has no rotations).
    ds = meta_dataset("Omniglot", "train", omniglot_root, 5, 1, 15)
    loader = DeviceTaskLoader(ds, batch_size=16, device="cpu", progress=False)
    assert loader.num_classes == len(ds.dataset) == 4 * 1028
    assert loader.images.shape == (4 * 1028 * 20, 1, 28, 28)
    # A rotated class (index >= 1028) holds the rotated images, as torchmeta gives them.
    assert torch.equal(loader.images[loader.offsets[2000] + 5], ds.dataset[2000][5][0])
    batch = next(iter(loader))
    assert batch["train"][0].shape == (16, 5, 1, 28, 28) and batch["train"][1].shape == (16, 5)
    assert batch["test"][0].shape == (16, 75, 1, 28, 28) and batch["test"][1].shape == (16, 75)
