"""Inner steps replayed from captured CUDA graphs (fast engine, CUDA only).

A ConvNet inner step on a 5-way task is ~150 small kernels; launching them from Python
costs more than running them. We capture one whole inner step (support forward,
backward, masked update, running sums) per static shape (support batch, image size,
dtype, tasks in flight) into a CUDA graph, with its inputs and outputs in static
buffers, and replay it T times: copy theta_0 into the buffers once, replay, read
theta_T and the sums.

With ``task_streams`` > 1, up to that many tasks of a batch share one graph: each task
has its own buffers and its step is captured on its own CUDA stream, so the graph holds
independent branches and the GPU overlaps the small kernels of several tasks (one
task's 25-image convolutions leave most of a large GPU idle).

The buffer logic is identical with ``use_cuda_graphs=False``, where "capture" just
keeps the eager steps: that mode runs on CPU and is what the tests check against the
eager engine. If capture fails (e.g. an op that cannot be captured), we warn once and
fall back to eager steps.
"""
import warnings

import torch


class _Slot:
    """Static buffers of one task: theta_t, masks, support set and running sums."""

    def __init__(self, engine, theta0, masks, x, y, need_sums):
        self.engine = engine
        self.params = {n: t.detach().clone() for n, t in theta0.items()}
        self.masks = {n: m.detach().clone() for n, m in masks.items()}
        self.x, self.y = x.clone(), y.clone()
        self.sums = engine.start_sums(self.params, self.masks) if need_sums else None

    def step(self):
        self.engine.inner_step_(self.params, self.sums, self.masks, self.x, self.y,
                                inplace=True)

    def load(self, theta0, masks, x, y):
        for n, t in theta0.items():
            self.params[n].copy_(t)
        for n, m in masks.items():
            self.masks[n].copy_(m)
        self.x.copy_(x)
        self.y.copy_(y)
        for name, sums in (self.sums or {}).items():
            self.engine.rule.mode_for(self.masks, name).reset_sums_(sums)

    def results(self):
        # Clones: the buffers are overwritten by the next task.
        params = {n: t.clone() for n, t in self.params.items()}
        if self.sums is None:
            return params, None
        return params, {n: {k: t.clone() for k, t in sums.items()}
                        for n, sums in self.sums.items()}


class _StaticSteps:
    """Slots of one shape and the captured (or eager) step that advances all of them."""

    def __init__(self, engine, tasks, use_cuda_graphs, need_sums=True, streams=()):
        self.slots = [_Slot(engine, *task, need_sums) for task in tasks]
        self.graph = self._capture(streams) if use_cuda_graphs else None

    def step(self):
        for slot in self.slots:
            slot.step()

    def _capture(self, streams):
        # Warm up on a side stream (cuDNN autotuning, allocator, torch.compile), as the
        # CUDA-graph docs ask; then restore the buffers the warm-up advanced.
        backup = [{n: t.clone() for n, t in slot.params.items()} for slot in self.slots]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self.step()
        torch.cuda.current_stream().wait_stream(side)
        graph, previous = torch.cuda.CUDAGraph(), torch.cuda.current_stream()
        try:
            # thread_local: CUDA calls of other threads (the DataLoader's pin-memory
            # thread) must not invalidate the capture. Autograd's backward runs on the
            # stream of its forward, so each task's branch stays on its own stream.
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                self._fork_join(torch.cuda.current_stream(), streams)
        except Exception as err:
            # graph.__exit__ can fail before it restores the stream, and then hides the
            # first error in __context__: restore, and report both.
            torch.cuda.set_stream(previous)
            first = f" (first: {err.__context__})" if err.__context__ is not None else ""
            raise RuntimeError(f"{err}{first}") from err
        for slot, saved in zip(self.slots, backup, strict=True):
            for n, t in saved.items():
                slot.params[n].copy_(t)
        return graph

    def _fork_join(self, origin, streams):
        """Each slot's step on its own stream, all forked from ``origin`` before any
        work so the branches are independent, and joined back before capture ends."""
        if len(self.slots) == 1:
            self.slots[0].step()
            return
        for stream in streams:
            stream.wait_stream(origin)
        try:
            for slot, stream in zip(self.slots, streams, strict=True):
                with torch.cuda.stream(stream):
                    slot.step()
        finally:            # an unjoined stream would make the capture itself fail
            for stream in streams:
                origin.wait_stream(stream)

    @torch.no_grad()
    def run(self, tasks, steps):
        """tasks: [(theta0, masks, x, y)] (as many as slots) -> [(theta_T, sums)]."""
        for slot, task in zip(self.slots, tasks, strict=True):
            slot.load(*task)
        for _ in range(steps):
            if self.graph is not None:
                self.graph.replay()
            else:
                self.step()
        return [slot.results() for slot in self.slots]


class InnerStepGraphs:
    """One ``_StaticSteps`` per signature (shapes, tasks in flight); see module docstring."""

    def __init__(self, engine, use_cuda_graphs=True, task_streams=1):
        self.engine = engine
        self.use_cuda_graphs = use_cuda_graphs
        self.task_streams = task_streams
        self.steps = {}
        self.streams = []
        self.failed = False

    def key(self, masks, x, y, need_sums, n_tasks):
        return (tuple(x.shape), x.dtype, x.device, tuple(y.shape), x.stride(),
                tuple(sorted(masks)), need_sums, n_tasks)

    def inner_loops(self, tasks, steps, need_sums=True):
        """``steps`` inner steps for each of ``tasks`` [(theta0, masks, x, y)], all of one
        shape, ``task_streams`` at a time. Returns [(theta_T, sums or None)]."""
        results = []
        for start in range(0, len(tasks), self.task_streams):
            group = tasks[start:start + self.task_streams]
            _, masks, x, y = group[0]
            key = self.key(masks, x, y, need_sums, len(group))
            static = self.steps.get(key)
            if static is None:
                static = self.steps[key] = self._build(group, x, need_sums)
            results += static.run(group, steps)
        return results

    def _build(self, group, x, need_sums):
        use_graphs = self.use_cuda_graphs and x.is_cuda and not self.failed
        try:
            return _StaticSteps(self.engine, group, use_graphs, need_sums,
                                self._streams(len(group)) if use_graphs else ())
        except RuntimeError as err:     # capture is best effort: fall back to eager
            warnings.warn(f"CUDA-graph capture failed for support shape {tuple(x.shape)} "
                          f"x {len(group)} tasks ({err}); using eager inner steps from now on",
                          stacklevel=2)
            self.failed = True
            return _StaticSteps(self.engine, group, False, need_sums)

    def _streams(self, n):
        """n streams for the task branches, made once. High priority: they come from
        another pool than torch.cuda.graph's capture stream, so none can be that stream
        (which would serialise its branch)."""
        while len(self.streams) < n:
            self.streams.append(torch.cuda.Stream(priority=-1))
        return self.streams[:n]
