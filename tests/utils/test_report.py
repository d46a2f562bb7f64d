"""Tests for utils/report.py on fabricated run folders."""
import json
import math

import numpy as np

from utils import report, sparsity_figure

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
    # Student's t: t(0.975, 2) = 4.3027 (a table value), not the normal 1.96
    assert math.isclose(m, 0.7) and math.isclose(ci, 4.302652729911275 * 0.1 / math.sqrt(3))


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
    t975 = {2: 12.706204736174698, 3: 4.302652729911275, 4: 3.182446305284263}[len(sparse_accs)]
    ci = 100 * t975 * np.std(sparse_accs, ddof=1) / math.sqrt(len(sparse_accs))
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


def _train_row(epoch, per_param):
    return dict(epoch=epoch, phase="train", accuracy=0.5, sparsity_per_param=per_param)


def test_sparsity_matrix_network_order_seed_mean_and_gaps():
    first = {0: {"conv.w": 0.2, "conv.b": 0.4, "head.w": 0.0},
             1: {"conv.w": 0.5, "conv.b": 0.6, "head.w": 0.1},
             2: {"conv.w": 0.9, "conv.b": 0.8},                      # head.w not logged
             4: {"conv.w": 1.0, "conv.b": 1.0, "head.w": 0.3}}       # epoch 3 not logged
    metrics = [_train_row(e, pp) for e, pp in first.items()]
    metrics += [dict(epoch=0, phase="val", accuracy=0.6, sparsity_per_param={"conv.w": 0.99}),
                dict(epoch=1, phase="train", accuracy=0.5)]
    # The second seed's dicts come in reverse order and name a tensor the first never logs;
    # it logs epoch 1 twice (e.g. a resumed run), which is averaged before the seed mean.
    second = [_train_row(0, {"extra": 0.7, "head.w": 0.2, "conv.b": 0.0, "conv.w": 0.4}),
              _train_row(1, {"head.w": 0.3, "conv.b": 0.2, "conv.w": 0.1}),
              _train_row(1, {"head.w": 0.5, "conv.b": 0.4, "conv.w": 0.3})]
    names, epochs, values = sparsity_figure.sparsity_matrix([{"metrics": metrics},
                                                             {"metrics": second}])

    assert names == ["conv.w", "conv.b", "head.w", "extra"]
    assert epochs.tolist() == [0, 1, 2, 3, 4]
    assert values.shape == (4, 5)
    row = {name: i for i, name in enumerate(names)}
    np.testing.assert_allclose(values[row["conv.w"], :3],
                               [100 * (0.2 + 0.4) / 2, 100 * (0.5 + (0.1 + 0.3) / 2) / 2, 90])
    np.testing.assert_allclose(values[row["head.w"], [0, 1, 4]],
                               [100 * (0.0 + 0.2) / 2, 100 * (0.1 + (0.3 + 0.5) / 2) / 2, 30])
    assert np.isnan(values[row["head.w"], 2])
    assert np.isnan(values[:, 3]).all()
    assert values[row["extra"], 0] == 70 and np.isnan(values[row["extra"], 1:]).all()


def test_sparsity_matrix_without_per_param_rows():
    names, epochs, values = sparsity_figure.sparsity_matrix(
        [{"metrics": [dict(epoch=0, phase="train")]}])
    assert names == [] and epochs.size == 0 and values.shape == (0, 0)


def test_shorten_names_drops_only_a_shared_prefix():
    convnet = ["features.layer1.conv.weight", "features.layer1.conv.bias", "classifier.weight"]
    assert sparsity_figure.shorten_names(convnet) == (convnet, "")
    wrapped = ["module." + name for name in convnet]
    assert sparsity_figure.shorten_names(wrapped) == (convnet, "module.")
    assert sparsity_figure.shorten_names(["net.block.weight"]) == (["weight"], "net.block.")
    assert sparsity_figure.shorten_names(["m.x", "m.x.y"]) == (["x", "x.y"], "m.")


def test_sparsity_figure_one_heatmap_per_masked_group(tmp_path):
    from matplotlib.image import imread

    per_param = {"features.layer1.conv.weight": lambda e: 0.25 * e,
                 "features.layer1.conv.bias": lambda e: 0.1,
                 "classifier.weight": lambda e: 0.0}
    for seed in (0, 1):
        _write_run(tmp_path, f"sparse{seed}", "sparse-maml", seed, 0.6, 0.01, per_param=per_param)
    _write_run(tmp_path, "relu", "sparse-relu-maml", 0, 0.6, 0.01, per_param=per_param)
    _write_run(tmp_path, "oneshot", "sparse-maml", 3, 0.5, 0.01, shots=1, per_param=per_param)
    _write_run(tmp_path, "maml", "maml", 0, 0.6, 0.01)          # no mask: no panel
    runs = report.find_runs(tmp_path)
    groups = report.group_runs(runs)

    fig, axes = report.sparsity_figure(runs)
    assert len(axes) == 3 and len(fig.axes) == 4                 # 3 heatmaps + 1 colour bar
    expected = {("sparse-maml", 5): (groups[("MiniImagenet", 5, "ConvNet", 5, "sparse-maml")],
                                     "2 seed(s): 0, 1"),
                ("sparse-relu-maml", 5): (groups[("MiniImagenet", 5, "ConvNet", 5,
                                                  "sparse-relu-maml")], "1 seed(s): 0"),
                ("sparse-maml", 1): (groups[("MiniImagenet", 5, "ConvNet", 1, "sparse-maml")],
                                     "1 seed(s): 3")}
    titles = [ax.get_title() for ax in axes]
    for (method, shots), (members, seeds) in expected.items():
        name = report.METHOD_NAMES[method]
        [i] = [i for i, t in enumerate(titles) if t.startswith(f"{name}, ConvNet, 5-way {shots}-")]
        assert seeds in titles[i] and "MiniImagenet" in titles[i]
        [image] = axes[i].get_images()
        names, epochs, values = sparsity_figure.sparsity_matrix(members)
        np.testing.assert_array_equal(np.ma.filled(image.get_array(), np.nan), values)
        assert (image.norm.vmin, image.norm.vmax) == (0, 100)
    assert [t.get_text() for t in axes[0].get_yticklabels()] == list(per_param)
    assert fig.axes[3].get_ylim() == (0, 100)                    # the shared colour scale

    png = tmp_path / "fig" / "sparsity.png"
    assert report.plot_sparsity(runs, png)
    height, width = imread(png).shape[:2]                      # the saved PNG is this figure
    np.testing.assert_allclose([width, height], fig.get_size_inches() * 120, atol=1)
