"""utils/run/atomic_io.py: atomic writes keep the previous file on any failure and leave no
temp files."""
import errno
import json
import os
import stat

import pytest
import torch

from utils.run.atomic_io import WriteError, atomic_write, remove_temp_files, save_json, save_torch


def temp_files(folder):
    return [name for name in os.listdir(folder) if name.startswith(".tmp-")]


def test_atomic_write_replaces_the_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    atomic_write(str(path), lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and not temp_files(tmp_path)


def test_new_files_follow_the_umask_and_existing_files_keep_their_mode(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write(str(tmp_path / "new"), lambda f: f.write(b"x"))
    finally:
        os.umask(umask)
    assert stat.S_IMODE(os.stat(tmp_path / "new").st_mode) == 0o644   # not mkstemp's 0o600
    (tmp_path / "private").write_bytes(b"x")
    os.chmod(tmp_path / "private", 0o600)
    atomic_write(str(tmp_path / "private"), lambda f: f.write(b"y"))
    assert stat.S_IMODE(os.stat(tmp_path / "private").st_mode) == 0o600


def disk_full_midway(f):
    f.write(b"some bytes of the new version")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_midway_keeps_previous_file_and_names_the_path(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_torch(str(path), {"w": torch.arange(3)})
    before = path.read_bytes()
    with pytest.raises(WriteError) as err:
        atomic_write(str(path), disk_full_midway)
    assert str(path) in str(err.value) and "No space left on device" in str(err.value)
    assert path.read_bytes() == before and not temp_files(tmp_path)
    assert torch.equal(torch.load(path, weights_only=True)["w"], torch.arange(3))


@pytest.mark.parametrize("error", [ValueError("bug"), KeyboardInterrupt()])
def test_other_failures_propagate_unchanged_and_clean_up(tmp_path, error):
    path = tmp_path / "results.json"
    save_json(str(path), {"a": 1})

    def fail(f):
        f.write("{half")
        raise error
    with pytest.raises(type(error)):
        atomic_write(str(path), fail, mode="w")
    assert json.loads(path.read_text()) == {"a": 1} and not temp_files(tmp_path)


def test_missing_or_read_only_folder_is_a_write_error(tmp_path):
    with pytest.raises(WriteError, match="could not write .*absent"):
        save_json(str(tmp_path / "absent" / "config.json"), {})
    if os.geteuid() != 0:       # root ignores permissions
        os.chmod(tmp_path, 0o500)
        try:
            with pytest.raises(WriteError, match="Permission denied"):
                save_json(str(tmp_path / "config.json"), {})
        finally:
            os.chmod(tmp_path, 0o700)


def test_save_json_and_save_torch_round_trip(tmp_path):
    save_json(str(tmp_path / "c.json"), {"b": [1, 2], "a": None})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": None, "b": [1, 2]}
    state = {"model": {"w": torch.randn(2, 3)}, "epoch": 4}
    save_torch(str(tmp_path / "s.pt"), state)
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    assert loaded["epoch"] == 4 and torch.equal(loaded["model"]["w"], state["model"]["w"])


def test_remove_temp_files_removes_only_leftovers(tmp_path):
    (tmp_path / ".tmp-checkpoint.pt-abc123").write_bytes(b"half")
    (tmp_path / "checkpoint.pt").write_bytes(b"whole")
    assert remove_temp_files(str(tmp_path)) == [".tmp-checkpoint.pt-abc123"]
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    assert remove_temp_files(str(tmp_path / "absent")) == []
