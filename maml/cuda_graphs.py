"""Inner steps replayed from captured CUDA graphs (fast engine, CUDA only).

A ConvNet inner step on a 5-way task is ~150 small kernels; launching them from Python
costs more than running them. We capture one whole inner step (support forward,
backward, masked update, running sums) per static shape (support batch, image size,
dtype) into a CUDA graph, with its inputs and outputs in static buffers, and replay it
T times per task: copy theta_0 into the buffers once, replay, read theta_T and the sums.

The buffer logic is identical with ``use_cuda_graphs=False``, where "capture" just
keeps the eager step: that mode runs on CPU and is what the tests check against the
eager engine. If capture fails (e.g. an op that cannot be captured), we warn once
and fall back to eager steps.
"""
import warnings

import torch


class _StaticStep:
    """Static buffers of one shape, and the captured (or eager) step that updates them."""

    def __init__(self, engine, theta0, masks, x, y, use_cuda_graphs, need_sums=True):
        self.engine = engine
        self.params = {n: t.detach().clone() for n, t in theta0.items()}
        self.masks = {n: m.detach().clone() for n, m in masks.items()}
        self.x, self.y = x.clone(), y.clone()
        self.sums = engine.start_sums(self.params) if need_sums else None
        self.graph = None
        if use_cuda_graphs:
            self.graph = self._capture()

    def step(self):
        self.engine.inner_step_(self.params, self.sums, self.masks, self.x, self.y,
                                inplace=True)

    def _capture(self):
        # Warm up on a side stream (cuDNN autotuning, allocator), as the CUDA-graph docs ask.
        backup = {n: t.clone() for n, t in self.params.items()}
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (the DataLoader's pin-memory thread)
        # must not invalidate the capture; autograd's backward runs on this stream.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.step()
        for n, t in backup.items():
            self.params[n].copy_(t)
        return graph

    @torch.no_grad()
    def run(self, theta0, masks, x, y, steps):
        for n, t in theta0.items():
            self.params[n].copy_(t)
        for n, m in masks.items():
            self.masks[n].copy_(m)
        self.x.copy_(x)
        self.y.copy_(y)
        weight = self.engine.rule.mask_mode == "weight"
        for acc in (self.sums or {}).values():
            acc[0].zero_()
            if weight:
                acc[1].fill_(1.0)
        for _ in range(steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self.step()
        # Clones: the buffers are overwritten by the next task.
        params = {n: t.clone() for n, t in self.params.items()}
        if self.sums is None:
            return params, None
        sums = {n: [a.clone() for a in acc] for n, acc in self.sums.items()}
        return params, sums


class InnerStepGraphs:
    """One ``_StaticStep`` per (support shape, query-free) signature; see module docstring."""

    def __init__(self, engine, use_cuda_graphs=True):
        self.engine = engine
        self.use_cuda_graphs = use_cuda_graphs
        self.steps = {}
        self.failed = False

    def key(self, masks, x, y, need_sums):
        return (tuple(x.shape), x.dtype, x.device, tuple(y.shape), x.stride(),
                tuple(sorted(masks)), need_sums)

    def inner_loop(self, theta0, masks, x, y, steps, need_sums=True):
        key = self.key(masks, x, y, need_sums)
        static = self.steps.get(key)
        if static is None:
            use_graphs = self.use_cuda_graphs and x.is_cuda and not self.failed
            try:
                static = _StaticStep(self.engine, theta0, masks, x, y, use_graphs, need_sums)
            except RuntimeError as err:     # capture is best effort: fall back to eager
                warnings.warn(f"CUDA-graph capture failed for support shape {tuple(x.shape)} "
                              f"({err}); using eager inner steps from now on")
                self.failed = True
                static = _StaticStep(self.engine, theta0, masks, x, y, False, need_sums)
            self.steps[key] = static
        return static.run(theta0, masks, x, y, steps)
