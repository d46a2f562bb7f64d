"""utils/run/weights.py: best.pt and the original's classifier.pth / mask.pth round-trip
into a learner, and files carrying pickled code are refused without running it."""
import pytest
import torch

from tests.conftest import learner_from_flags
from utils.run.weights import WeightsError, load_best, load_original_format, save_best

FLAGS = ["--dataset", "Strokes", "--hidden_size", "4", "--method", "sparse-maml",
         "--dont_use_cuda"]


class Payload:
    """Unpickling this creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("original_format", [False, True])
def test_saved_weights_load_into_a_fresh_learner(tmp_path, original_format):
    trained, fresh = learner_from_flags(FLAGS, seed=0), learner_from_flags(FLAGS, seed=1)
    save_best(tmp_path, trained, original_format=original_format)
    if original_format:
        (tmp_path / "best.pt").unlink()
    loaded = load_best(fresh, tmp_path)
    assert loaded == ("classifier.pth+mask.pth" if original_format else "best.pt")
    for a, b in ((trained.model, fresh.model), (trained.mask, fresh.mask)):
        for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q), name


@pytest.mark.parametrize("name", ["best.pt", "classifier.pth"])
def test_weights_with_code_are_refused_and_the_code_never_runs(tmp_path, name):
    marker = tmp_path / "payload-ran"
    torch.save({"model": Payload(marker)}, tmp_path / name)
    learner = learner_from_flags(FLAGS)
    with pytest.raises(WeightsError, match="cannot load"):
        (load_best if name == "best.pt" else load_original_format)(learner, tmp_path)
    assert not marker.exists()


def test_weights_of_another_model_say_what_does_not_fit(tmp_path):
    save_best(tmp_path, learner_from_flags(FLAGS))
    other = learner_from_flags([f if f != "4" else "8" for f in FLAGS])
    with pytest.raises(WeightsError, match="does not fit the backbone"):
        load_best(other, tmp_path)
