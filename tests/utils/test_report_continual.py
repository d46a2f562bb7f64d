"""utils.report_continual: runs grouped by (benchmark, method), mean +- Student's t std(ddof=1)
/ sqrt(n) over seeds, in markdown and JSON lines."""
import json
import math

from utils.report_continual import main, mean_ci


def write_run(root, name, results):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))


def sequence(method, seed, retained, bwt):
    return {"benchmark": "digits-rotations", "method": method, "seed": seed,
            "retained_accuracy": retained, "bwt": bwt, "learning_accuracy": 0.5,
            "sparsity": None, "wall_clock_s": 10.0, "ms_per_batch": 5.0, "R": [[retained]]}


def test_mean_ci_is_student_t_sample_std_over_sqrt_n():
    m, ci = mean_ci([0.5, 0.6, 0.7])
    assert m == 0.6 and math.isclose(ci, 4.302652729911275 * 0.1 / math.sqrt(3))   # t(.975, 2)
    assert math.isnan(mean_ci([0.4])[1])


def test_tables_and_jsonl(tmp_path, capsys):
    for seed, ra in enumerate((0.5, 0.6, 0.7)):
        write_run(tmp_path, f"la/seed{seed}", sequence("la-maml", seed, ra, -0.1))
    write_run(tmp_path, "sgd/seed0", sequence("online-sgd", 0, 0.3, -0.4))
    write_run(tmp_path, "stream/seed0", {
        "benchmark": "osaka-omniglot", "method": "continual-maml-pa", "seed": 0,
        "online_accuracy": 0.75, "online_accuracy_per_mode": {"omniglot": 0.8, "rotated": 0.6},
        "boundaries": {"precision": 1.0, "recall": 0.5}, "sparsity": 0.0,
        "wall_clock_s": 3.0, "ms_per_step": 9.0})
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "results.json").write_text("{not json")
    out_file = tmp_path / "summary.jsonl"
    assert main([str(tmp_path), "--jsonl", str(out_file)]) == 0
    out = capsys.readouterr().out
    la = next(line for line in out.splitlines() if line.startswith("| la-maml"))
    assert f"60.0 ± {100 * 4.302652729911275 * 0.1 / math.sqrt(3):.1f}" in la and "| 3 |" in la
    sgd = next(line for line in out.splitlines() if line.startswith("| online-sgd"))
    assert "| 30.0 |" in sgd and "-40.0" in sgd              # one seed: no CI
    assert out.index("| online-sgd") < out.index("| la-maml")  # floors first
    stream = next(line for line in out.splitlines() if line.startswith("| continual-maml-pa"))
    assert "| 75.0 | 80.0 | 60.0 |" in stream and "| 1.00 | 0.50 |" in stream
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    summary = [r for r in rows if r["kind"] == "summary" and r["method"] == "la-maml"][0]
    assert summary["seeds"] == [0, 1, 2] and math.isclose(summary["retained_accuracy"], 0.6)
    assert sum(r["kind"] == "run" for r in rows) == 5 and "R" not in rows[0]


def test_no_runs_is_an_error(tmp_path):
    assert main([str(tmp_path)]) == 1
