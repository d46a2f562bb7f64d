"""Google Drive downloads (utils/data/drive.py) against a fake Drive on loopback.

The fake (tests/utils/data/fake_drive.py) answers as Drive does for a large file: a
redirect, a confirmation page, then the file; or a quota page, a truncated body, other
bytes, an HTML page as attachment. gdown, torchvision's downloader and torchmeta's
MiniImagenet processing all run unchanged on real sockets.
"""
import hashlib
import importlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from tests.utils.data.fake_drive import FakeDrive, route_google_to
from utils.data.loaders import DataUnavailable, meta_dataset
from utils.data.torchmeta_compat import MiniImagenet

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
MINI = MiniImagenet.__init__.__globals__["MiniImagenetClassDataset"]
CLASSES, IMAGES = 5, 3


def mini_imagenet_archive():
    """A small mini-imagenet.tar.gz as torchmeta downloads it (one pickle per split)."""
    rng = np.random.default_rng(0)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for s, split in enumerate(("train", "val", "test")):
            images = rng.integers(0, 256, (CLASSES * IMAGES, 84, 84, 3), dtype=np.uint8)
            classes = {f"n{s}{c:07d}": list(range(c * IMAGES, (c + 1) * IMAGES))
                       for c in range(CLASSES)}
            data = pickle.dumps({"image_data": images, "class_dict": classes})
            info = tarfile.TarInfo(f"mini-imagenet-cache-{split}.pkl")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="module")
def archive():
    return mini_imagenet_archive()


@pytest.fixture
def drive(archive, monkeypatch, tmp_path):
    """A function scenario -> running FakeDrive serving the archive under MiniImagenet's
    file id, with MiniImagenet expecting the archive's md5 and requests routed to it."""
    gdown_download = importlib.import_module("gdown.download")    # not gdown.download()
    monkeypatch.setattr(gdown_download, "DEFAULT_COOKIES_FILE", str(tmp_path / "cookies.txt"))
    monkeypatch.setattr(MINI, "gz_md5", hashlib.md5(archive).hexdigest())
    servers = []

    def start(scenario):
        server = FakeDrive({MINI.gdrive_id: (MINI.gz_filename, archive)}, scenario)
        servers.append(server.__enter__())
        route_google_to(server.port, monkeypatch)
        return server
    yield start
    for server in servers:
        server.__exit__(None, None, None)


def load(root, download=True):
    return meta_dataset("MiniImagenet", "train", str(root), 5, 1, 2, download=download)


def test_torchmeta_downloads_through_the_new_downloader():
    import torchvision.datasets.utils as tv_utils

    from utils.data.drive import download_from_drive
    from utils.data.torchmeta_compat import torchmeta
    for module in ("miniimagenet", "tieredimagenet", "cub", "utils"):
        bound = getattr(torchmeta.datasets, module).download_file_from_google_drive
        assert bound is download_from_drive, module
    assert not hasattr(tv_utils, "_get_confirm_token")    # the placeholders are gone


def test_confirmation_page_then_file_is_downloaded_and_processed(drive, tmp_path):
    server = drive("file")
    dataset = load(tmp_path)
    assert len(dataset.dataset) == CLASSES
    hosts = [host for host, _ in server.requests]
    assert hosts == ["drive.google.com", "drive.usercontent.google.com",
                     "drive.usercontent.google.com"]
    assert "confirm=t" in server.requests[-1][1]    # the form of the confirmation page
    folder = tmp_path / "miniimagenet"
    assert {f"{s}_data.hdf5" for s in ("train", "val", "test")} <= set(os.listdir(folder))
    assert not [n for n in os.listdir(folder) if ".download" in n or n.endswith(".part")]


def test_archive_in_place_is_processed_without_network(drive, archive, tmp_path):
    server = drive("quota")         # would refuse, but must not even be asked
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    (folder / MINI.gz_filename).write_bytes(archive)
    assert len(load(tmp_path).dataset) == CLASSES
    assert server.requests == []


@pytest.mark.parametrize("scenario, says", [
    ("quota", "Too many users have viewed or downloaded this file recently"),
    ("truncated", "Download is incomplete"),
    ("other_bytes", "a truncated or different file"),
    ("html_attachment", "a Google Drive quota message titled 'Google Drive - Quota exceeded'"),
])
def test_refusals_stop_with_one_paragraph(drive, tmp_path, scenario, says):
    drive(scenario)
    with pytest.raises(DataUnavailable) as info:
        load(tmp_path)
    message = str(info.value)
    archive_path = os.path.join(str(tmp_path), "miniimagenet", MINI.gz_filename)
    for part in (says, MINI.gdrive_id, f"https://drive.google.com/uc?id={MINI.gdrive_id}",
                 archive_path, "--download", "only processed", "prepare_data.py miniimagenet"):
        assert part in message, (part, message)
    assert "\n" not in message
    assert os.listdir(tmp_path / "miniimagenet") == []      # nothing half-downloaded stays


def test_wrong_archive_in_place_is_named_and_kept(drive, tmp_path):
    server = drive("file")
    folder = tmp_path / "miniimagenet"
    folder.mkdir()
    (folder / MINI.gz_filename).write_text("<!DOCTYPE html><html><title>Sign in</title>")
    with pytest.raises(DataUnavailable, match="is already there but is an HTML page titled "
                                              "'Sign in'"):
        load(tmp_path)
    assert server.requests == []
    assert (folder / MINI.gz_filename).exists()     # the user's file is theirs to delete


LAUNCHER = """import os, runpy, sys
os.environ["HOME"] = {home!r}      # gdown keeps its cookies under ~/.cache
sys.path.insert(0, {repo!r})
from tests.utils.data.fake_drive import route_google_to
route_google_to({port})
sys.argv[0] = "train.py"
runpy.run_path({train!r}, run_name="__main__")
"""


def test_train_exits_2_with_the_message(archive, tmp_path, zygote):
    """train.py --download, Drive over its quota: exit 2 before training, one paragraph."""
    with FakeDrive({MINI.gdrive_id: (MINI.gz_filename, archive)}, "quota") as server:
        launcher = tmp_path / "train_via_fake_drive.py"
        launcher.write_text(LAUNCHER.format(home=str(tmp_path), repo=REPO, port=server.port,
                                            train=os.path.join(REPO, "train.py")))
        result = zygote.run(str(launcher), [
            "--dataset", "MiniImagenet", "--download", "--data_folder", tmp_path / "data",
            "--out_dir", tmp_path / "run", "--dont_use_cuda", "--num_workers", "0"])
    assert result.code == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "Too many users" in error[0] and MINI.gdrive_id in error[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
