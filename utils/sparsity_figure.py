"""The sparsity figure of the report: % zeros of the mask per parameter tensor (rows, in
network order) over epochs (columns), one heatmap per group of runs, as in von Oswald
et al. 2021, Figure 1 (centre): a row that turns bright is a tensor whose inner-loop
updates are masked out, i.e. a layer that stops adapting."""
from collections import defaultdict

import numpy as np


def sparsity_matrix(members):
    """% zeros per parameter tensor and epoch, mean over the runs (seeds) of one group.

    Reads the train rows of each run's metrics.jsonl (``sparsity_per_param``: {name: fraction
    of zeros in the mask}).  Returns ``(names, epochs, values)``: ``names`` in network order,
    i.e. the order in which they first appear in the rows of the first run (in ``members``
    order; group_runs sorts by seed) that logged any: the model's named_parameters order,
    whatever order later runs' dicts come in; names only later runs log follow, in their order
    of first appearance;
    ``epochs`` is every integer from the first to the last logged epoch, shape (E,), so a gap
    shows as a column; ``values`` has shape (len(names), E), in %, the mean over the runs that
    logged that tensor at that epoch (a run's repeated rows for one epoch are averaged first),
    NaN where none did.
    """
    names, per_run = {}, []  # names: {name: row index}, in order of first appearance
    for run in members:
        cells = defaultdict(list)
        for row in run["metrics"]:
            if row.get("phase") == "train" and row.get("sparsity_per_param") and "epoch" in row:
                for name, frac in row["sparsity_per_param"].items():
                    names.setdefault(name, len(names))
                    cells[(name, int(row["epoch"]))].append(float(frac))
        per_run.append(cells)
    logged = [epoch for cells in per_run for _, epoch in cells]
    if not logged:
        return [], np.zeros(0, dtype=int), np.zeros((0, 0))
    epochs = np.arange(min(logged), max(logged) + 1)
    sums, counts = np.zeros((len(names), len(epochs))), np.zeros((len(names), len(epochs)))
    for cells in per_run:
        for (name, epoch), fracs in cells.items():
            sums[names[name], epoch - epochs[0]] += 100 * np.mean(fracs)
            counts[names[name], epoch - epochs[0]] += 1
    values = np.full(sums.shape, np.nan)
    np.divide(sums, counts, out=values, where=counts > 0)
    return list(names), epochs, values


def shorten_names(names):
    """Drop the dotted prefix that every name shares (e.g. ``module.``), keeping the last part.

    Returns ``(short_names, prefix)``; names without a common prefix come back unchanged.
    """
    parts = [name.split(".") for name in names]
    depth = 0
    while (parts and all(len(p) > depth + 1 for p in parts)
           and len({p[depth] for p in parts}) == 1):
        depth += 1
    prefix = ".".join(parts[0][:depth]) + "." if depth else ""
    return [".".join(p[depth:]) for p in parts], prefix


def heatmaps(panels):
    """Heatmaps of mask sparsity (% zeros) per parameter tensor (rows) over epochs (columns).

    ``panels``: [(title, runs)], one panel per group of runs (seeds) that logged
    per-parameter sparsity (mean over its runs; a run is a dict with "metrics", its
    metrics.jsonl rows), all on one 0-100 % colour scale with one colour bar. Returns
    ``(figure, panel_axes)``, or None when no group has per-parameter sparsity.
    """
    # A bare Figure (no pyplot): no GUI backend, no global figure state to clean up.
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = [(title, members, sparsity_matrix(members)) for title, members in panels]
    panels = [panel for panel in panels if panel[2][0]]
    if not panels:
        return None
    cols = min(3, len(panels))
    grid_rows = [panels[i:i + cols] for i in range(0, len(panels), cols)]
    # Height per grid row follows its tallest panel, so every tensor keeps a readable label.
    heights = [max(2.4, 1.2 + 0.16 * max(len(p[2][0]) for p in row)) for row in grid_rows]
    fig = Figure(figsize=(4.5 * cols + 2, sum(heights) + 0.6), layout="constrained")
    grid = fig.add_gridspec(len(grid_rows), cols, height_ratios=heights)
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    axes = []
    for i, (title, _, (names, epochs, values)) in enumerate(panels):
        ax = fig.add_subplot(grid[i // cols, i % cols])
        image = ax.imshow(values, cmap=cmap, vmin=0, vmax=100, aspect="auto",
                          interpolation="nearest",
                          extent=(epochs[0] - 0.5, epochs[-1] + 0.5, len(names) - 0.5, -0.5))
        labels, prefix = shorten_names(names)
        ax.set_yticks(range(len(names)), labels, fontsize=6.5 if len(names) <= 30 else 5.5)
        if i % cols and names == panels[i - 1][2][0]:  # same rows as its left neighbour
            ax.tick_params(axis="y", labelleft=False)
        elif prefix:
            ax.set_ylabel(f"parameter (prefix {prefix} omitted)", fontsize=7)
        if len(epochs) < 6:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True, steps=[1, 2, 2.5, 5, 10]))
        ax.tick_params(axis="x", labelsize=8)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_title(title, fontsize=9)
        axes.append(ax)
    bar = fig.colorbar(image, ax=axes, pad=0.01)
    bar.set_label("% zeros in mask (grey: not logged)", fontsize=8)
    fig.suptitle("Mask sparsity per parameter tensor over training (network order, top to bottom)")
    return fig, axes
