"""Tests for utils/report.py on fabricated run folders."""
import json
import math

import numpy as np

from utils import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_run(root, name, method, seed, acc, ci, shots=5, dataset="MiniImagenet", resnet=False,
               sparsity=None, per_param=None, cross=None, cell=None):
    d = root / name
    d.mkdir(parents=True)
    args = dict(dataset=dataset, resnet=resnet, big_resnet=False, num_ways=5,
                num_shots_train=shots, method=method, seed=seed)
    config = {"args": args, "_meta": {}}
    if cell:
        config["_cell"] = cell
    (d / "config.json").write_text(json.dumps(config))
    results = dict(best_epoch=3, test_accuracy=acc, test_ci95=ci, num_test_tasks=600,
                   mean_sparsity=sparsity, sparsity={}, wall_clock_s=1.0)
    if cross:
        results["cross_domain"] = cross
    (d / "results.json").write_text(json.dumps(results))
    rows = []
    for epoch in range(4):
        row = dict(epoch=epoch, phase="train", accuracy=0.5, loss=1.0)
        if per_param:
            row["sparsity"] = float(np.mean([f(epoch) for f in per_param.values()]))
            row["sparsity_per_param"] = {k: f(epoch) for k, f in per_param.items()}
        rows.append(row)
        rows.append(dict(epoch=epoch, phase="val", accuracy=0.55, ci95=0.01))
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    return d


def _fixture(root):
    sparse_accs = [0.66, 0.68, 0.675]
    for seed, acc in enumerate(sparse_accs):
        per_param = {"conv1.weight": lambda e, s=seed: 0.1 * e + 0.01 * s,
                     "classifier.weight": lambda e: 0.05 * e}
        _write_run(root / "sparse", f"seed{seed}", "sparse-maml", seed, acc, 0.009,
                   sparsity=0.40 + 0.01 * seed, per_param=per_param,
                   cell="convnet-5shot-sparse-maml")
    _write_run(root, "maml1", "maml", 0, 0.612, 0.0085, shots=1,
               cross={"CUB": {"accuracy": 0.45, "ci95": 0.007, "num_tasks": 600}})
    _write_run(root, "plus", "sparse-maml-plus", 0, 0.70, 0.008, sparsity=0.5)
    _write_run(root, "omni", "maml", 1, 0.98, 0.002, dataset="Omniglot")
    broken = root / "broken"
    broken.mkdir()
    (broken / "results.json").write_text(json.dumps({"test_accuracy": 0.5, "test_ci95": 0.01}))
    return sparse_accs


def test_mean_ci():
    assert report.mean_ci([0.6], 0.01) == (0.6, 0.01)
    m, ci = report.mean_ci([0.6, 0.7, 0.8], 0.01)
    assert math.isclose(m, 0.7) and math.isclose(ci, 1.96 * 0.1 / math.sqrt(3))


def test_find_and_group(tmp_path):
    _fixture(tmp_path)
    skipped = []
    runs = report.find_runs(tmp_path, skipped)
    assert len(runs) == 6 and len(skipped) == 1 and skipped[0][0].endswith("broken")
    groups = report.group_runs(runs)
    assert len(groups[("MiniImagenet", 5, "ConvNet", 5, "sparse-maml")]) == 3
    assert len(groups) == 4


def test_main_report_and_png(tmp_path, capsys):
    sparse_accs = _fixture(tmp_path)
    png = tmp_path / "out" / "fig.png"
    assert report.main([str(tmp_path), "--out-png", str(png)]) == 0
    out, err = capsys.readouterr()

    mean = 100 * np.mean(sparse_accs)
    ci = 100 * 1.96 * np.std(sparse_accs, ddof=1) / math.sqrt(len(sparse_accs))
    sparsity = 100 * np.mean([0.40, 0.41, 0.42])
    assert f"{mean:.1f} ± {ci:.1f} (paper 67.03) [sparsity {sparsity:.0f}%]" in out
    assert f"{100 * 0.612:.1f} ± {100 * 0.0085:.1f} (paper 48.07)" in out  # one seed: task CI
    assert "(paper 63.15)" in out  # MAML column shown for the 5-shot ConvNet row
    assert "3 seed(s) 0, 1, 2 [convnet-5shot-sparse-maml]" in out
    assert "| sparse-maml-plus |" in out  # extra method gets its own column
    assert f"{100 * 0.70:.1f} ± {100 * 0.008:.1f} [sparsity 50%]" in out
    assert "### Omniglot 5-way" in out
    omniglot_table = out.split("### Omniglot 5-way")[1].split("###")[0]
    assert "98.0 ± 0.2" in omniglot_table and "paper" not in omniglot_table
    assert "cross-domain (trained on MiniImageNet)" in out
    assert f"{100 * 0.45:.1f} ± {100 * 0.007:.1f}" in out
    assert "7 run folder(s)" in out and "6 used" in out and "1 skipped" in out
    assert "broken" in err

    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000


def test_default_png_and_paper_flag(tmp_path, capsys):
    _write_run(tmp_path, "only", "anil", 0, 0.7, 0.01, resnet=True)
    assert report.main([str(tmp_path), "--paper"]) == 0
    out = capsys.readouterr().out
    assert "(paper 73.01)" in out and "1-shot ConvNet" in out  # all paper rows/columns shown
    assert "70.0 ± 1.0 (paper 70.03)" in out
    assert "no per-layer sparsity to plot" in out
    assert not (tmp_path / "sparsity_by_layer.png").exists()


def test_plot_sparsity_default_location(tmp_path):
    _fixture(tmp_path)
    assert report.main([str(tmp_path)]) == 0
    assert (tmp_path / "sparsity_by_layer.png").read_bytes()[:8] == PNG_MAGIC
