"""How the mask m enters the inner loop: one class per mode, selected by name.

A mode owns everything that differs between MAML, sparse-MAML, Meta-SGD-style
learning-rate masks and weight masks, for one parameter tensor (any shape; theta, g, m
and every running sum have that shape):

- ``initial(theta, m)``: theta_0, where the inner loop starts;
- ``update(theta, g, m)``: theta_t from theta_{t-1} and the inner gradient g_t;
- ``SUMS`` and ``accumulate``: the running sums the fast engine keeps over the inner
  steps, {name: value at t = 0}, and their update after each step; ``first_sums`` gives
  them after step 1 without materialising the start (0 + g is g);
- ``outer_grads(d, m, sums)``: the closed-form first-order outer gradient. Each g_t is
  a constant for the outer gradient (first order), so theta_T is an explicit function of
  theta_0 and m, and with d = dL_query / d theta_T this returns
  (dL/d theta_0, dL/dm) elementwise (dL/dm is None when m does not enter).

The reference engine backpropagates through ``update`` itself; the fast engine and the
CUDA-graph buffers only use ``accumulate`` / ``outer_grads``; tests require both to give
the same gradients for every mode. Adding a mode is one subclass plus one line in
``MASK_MODES`` (README, "Extending").

torch is imported where a tensor is made, so that train.py's command line can list the
registered modes without importing torch (``sweep.py --status`` answers at once).
"""


class MaskMode:
    """Base class; ``step_size`` is alpha. Subclasses set ``SUMS`` and override methods."""

    SUMS = {}
    uses_mask = True      # False: the mode ignores m (MAML), so no mask is learned

    def __init__(self, step_size):
        self.step_size = step_size

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # A parent's first_sums shortcut knows only the parent's sums: a subclass that
        # changes accumulate gets the generic first step unless it gives its own.
        if "accumulate" in vars(cls) and "first_sums" not in vars(cls):
            cls.first_sums = MaskMode.first_sums

    def initial(self, theta, mask):
        return theta

    def update(self, theta, grad, mask):
        raise NotImplementedError

    def start_sums(self, theta):
        """{name: tensor like theta}, the running sums before the first step."""
        import torch
        return {name: torch.full_like(theta, value) for name, value in self.SUMS.items()}

    def reset_sums_(self, sums):
        """Set existing sum buffers (CUDA-graph static buffers) back to their start."""
        for name, value in self.SUMS.items():
            sums[name].fill_(value)

    def accumulate(self, sums, theta, grad, mask):
        """The sums after one more step, from theta_{t-1}, g_t and m (new tensors)."""
        return {}

    def first_sums(self, theta, grad, mask):
        """The sums after step 1, from theta_0, g_1 and m: ``accumulate`` from the start
        values. Modes override it where that is a tensor already at hand (the same values),
        which saves a parameter-sized fill and add per sum: the whole difference between
        the engines when the inner loop takes one step. Optional for a new mode."""
        return self.accumulate(self.start_sums(theta), theta, grad, mask)

    def outer_grads(self, d, mask, sums):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(step_size={self.step_size})"


class NoMask(MaskMode):
    """MAML: theta_t = theta_{t-1} - alpha g_t, so theta_T = theta_0 - alpha sum_t g_t and
    dL/d theta_0 = d. No running sum is needed."""

    uses_mask = False

    def update(self, theta, grad, mask):
        return theta - self.step_size * grad

    def outer_grads(self, d, mask, sums):
        return d, None


class GradientMask(MaskMode):
    """sparse-MAML (Eq. 3): theta_t = theta_{t-1} - alpha (m * g_t), a binary m gating each
    parameter's inner-loop gradient descent. With G = sum_t g_t:
    theta_T = theta_0 - alpha m G, so dL/d theta_0 = d and dL/dm = -alpha G d."""

    SUMS = {"G": 0.0}

    def update(self, theta, grad, mask):
        return theta - self.step_size * (grad * mask)

    def accumulate(self, sums, theta, grad, mask):
        return {"G": sums["G"] + grad}

    def first_sums(self, theta, grad, mask):
        return {"G": grad}

    def outer_grads(self, d, mask, sums):
        return d, -self.step_size * (sums["G"] * d)


class LearningRateMask(GradientMask):
    """m is a per-parameter learning rate (Meta-SGD, sparse-ReLU-MAML, exp / ReLU masks):
    theta_t = theta_{t-1} - m * g_t, alpha not applied. theta_T = theta_0 - m G, so
    dL/d theta_0 = d and dL/dm = -G d."""

    def update(self, theta, grad, mask):
        return theta - grad * mask

    def outer_grads(self, d, mask, sums):
        return d, -(sums["G"] * d)


class WeightMask(MaskMode):
    """``--weight_mask``: theta_0 = theta * m and theta_t = (theta_{t-1} - alpha g_t) * m.

    Then d theta_T / d theta_0 = P = m^T and d theta_T / d m = J with
    J_t = J_{t-1} * m + (theta_{t-1} - alpha g_t), J_0 = 0, P_0 = 1; so
    dL/d theta_0 = d * P and dL/dm = d * J (the backward through theta_0 = theta * m
    adds the t = 0 term).
    """

    SUMS = {"J": 0.0, "P": 1.0}

    def initial(self, theta, mask):
        return theta * mask

    def update(self, theta, grad, mask):
        return (theta - self.step_size * grad) * mask

    def accumulate(self, sums, theta, grad, mask):
        return {"J": sums["J"] * mask + (theta - self.step_size * grad),
                "P": sums["P"] * mask}

    def first_sums(self, theta, grad, mask):
        return {"J": theta - self.step_size * grad, "P": mask}

    def outer_grads(self, d, mask, sums):
        return d * sums["P"], d * sums["J"]


MASK_MODES = {
    "none": NoMask,
    "gradient": GradientMask,
    "learning_rate": LearningRateMask,
    "weight": WeightMask,
}


def mask_mode(name, step_size):
    """The mode registered as ``name`` (a key of MASK_MODES) with step size alpha."""
    if name not in MASK_MODES:
        raise ValueError(f"unknown mask mode {name!r}; expected one of {sorted(MASK_MODES)}")
    return MASK_MODES[name](step_size)
