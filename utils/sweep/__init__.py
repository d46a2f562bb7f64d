"""Sweeps: many train.py or continual.py runs from one grid file, on local CPUs/GPUs or a
Slurm job array.

programs.py describes each entry script a sweep can run (the grid's "program": its
script, parser, run-folder files, results columns, report), grid.py expands GRID.json
into points (flag sets with readable ids), validate.py checks every point with the
program's own parser before anything runs, layout.py maps points and seeds to run
folders ROOT/<point>/seed<i> and records them in ROOT/sweep.json, state.py reads a run's
status from its folder, local.py and slurm.py run them, results.py collects
ROOT/results.csv and the per-point summary; cli.py is sweep.py's parser. The entry
script is ``sweep.py``.
"""
