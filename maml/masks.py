"""Learned masks m(phi) over the inner-loop gradients (sparse-MAML, Eq. 3 of the paper).

One logit tensor phi (``mask_logits``) per inner-loop parameter, same shape, kept in a
``ParameterList`` named ``weight_mask_list`` in the order of the model's named
parameters, so the authors' ``mask.pth`` loads unchanged.

Kinds of m(phi):
- ``binary`` (sparse-MAML): m = (sign(phi) + 1) / 2, straight-through backward
  (identity through sign, so dm/dphi = 1/2);
- ``relu_through`` (sparse-ReLU-MAML): m = ReLU(phi) forward, identity backward;
- ``relu``: m = ReLU(phi); ``linear`` (Meta-SGD): m = phi; ``exp``: m = exp(phi).
"""
import torch
import torch.nn as nn

MASK_KINDS = ("binary", "relu_through", "relu", "linear", "exp")


class _SignStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


class _ReluStraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.relu(x)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def sign_straight_through(x):
    """sign(x) forward, identity backward (any shape)."""
    return _SignStraightThrough.apply(x)


def relu_straight_through(x):
    """ReLU(x) forward, identity backward (any shape): negative inputs still get gradient,
    so a parameter whose rate or mask is switched off can come back."""
    return _ReluStraightThrough.apply(x)


def mask_value(logits, kind):
    """m(phi) for one logit tensor (any shape); see the module docstring for the kinds."""
    if kind == "binary":
        return 0.5 * (sign_straight_through(logits) + 1)
    if kind == "relu_through":
        return relu_straight_through(logits)
    if kind == "relu":
        return torch.relu(logits)
    if kind == "linear":
        return logits
    if kind == "exp":
        return torch.exp(logits)
    raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")


def is_learning_rate_kind(kind):
    """Whether m is a per-parameter learning rate (the step size alpha is then not applied)."""
    return kind != "binary"


INITS = ("uniform", "kaiming", "constant", "meta_sgd")


def init_mask_logits_(logits, init="uniform", step_size=0.1, init_shift=0.0):
    """Initialise one phi tensor in place, as the original ``GradientMask``.

    init: "constant" (phi = step_size), "meta_sgd" (U(0.005, 0.1)), "kaiming"
    (kaiming_uniform for tensors with > 1 dim, else U(-0.5, 0.5)) or "uniform"
    (U(-0.5, 0.5)); the last two are then centred and shifted: phi - mean(phi) + init_shift.
    """
    with torch.no_grad():
        if init == "constant":
            logits.fill_(step_size)
        elif init == "meta_sgd":
            nn.init.uniform_(logits, 0.005, 0.1)
        else:
            if init == "kaiming" and logits.dim() > 1:
                nn.init.kaiming_uniform_(logits)
            else:
                nn.init.uniform_(logits, -0.5, 0.5)
            logits.sub_(logits.mean()).add_(init_shift)
    return logits


class GradientMask(nn.Module):
    """phi for the named inner-loop parameters; ``forward() -> {name: m [same shape]}``.

    With ``mask_plus`` (the noise-driven hypernetwork below), the conv parameters get
    their masks from it and no phi of their own, as the original.
    """

    def __init__(self, names, shapes, kind="binary", init="uniform", step_size=0.1,
                 init_shift=0.0, mask_plus=None):
        super().__init__()
        if kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")
        self.kind = kind
        self.mask_plus = mask_plus
        self.names = []
        self.weight_mask_list = nn.ParameterList()
        for name, shape in zip(names, shapes, strict=True):
            if mask_plus is not None and "conv" in name:
                continue
            logits = nn.Parameter(torch.zeros(shape))
            init_mask_logits_(logits, init, step_size, init_shift)
            self.names.append(name)
            self.weight_mask_list.append(logits)

    def logits(self):
        """{name: phi} for the parameters with their own logits."""
        return dict(zip(self.names, self.weight_mask_list, strict=True))

    def forward(self):
        masks = {name: mask_value(phi, self.kind) for name, phi in self.logits().items()}
        if self.mask_plus is not None:
            masks.update(self.mask_plus())
        return masks


class GradientMaskPlus(nn.Module):
    """"sparse-MAML PLUS": conv-weight masks from a noise-driven linear hypernetwork.

    z = eps * s + b with eps ~ N(0, I) [feature_size], learned s (ones) and b (zeros);
    a = Linear(z) reshaped into one [out_channels, c_in, k, k] mask per conv weight;
    m = m_kind(a + shift). A fresh eps is drawn on every call (once per task). The
    original hard-codes 64 channels, 3 input channels and the CUDA device; here the layer
    sizes follow the backbone.
    """

    def __init__(self, names, in_channels_per_layer, out_channels, feature_size,
                 kernel_size=3, kind="binary", shift=0.0):
        super().__init__()
        self.names = list(names)
        self.layer_sizes = list(in_channels_per_layer)
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.kind = kind
        self.shift = shift
        self.row_size = kernel_size * kernel_size * out_channels
        self.alphas = nn.Linear(feature_size, sum(self.layer_sizes) * self.row_size)
        self.weight_embedding_list = nn.ParameterList([
            nn.Parameter(torch.ones(feature_size)),
            nn.Parameter(torch.zeros(feature_size)),
        ])

    def forward(self):
        scale, offset = self.weight_embedding_list
        z = torch.randn_like(scale) * scale + offset
        rows = self.alphas(z).reshape(sum(self.layer_sizes), self.row_size)
        masks, start = {}, 0
        for name, c_in in zip(self.names, self.layer_sizes, strict=True):
            a = rows[start:start + c_in].reshape(self.out_channels, c_in,
                                                 self.kernel_size, self.kernel_size)
            masks[name] = mask_value(a + self.shift, self.kind)
            start += c_in
        return masks


def mask_sparsity(masks):
    """Fraction of exact zeros in m: ({name: fraction}, overall fraction)."""
    per_tensor, zeros, total = {}, 0, 0
    with torch.no_grad():
        for name, m in masks.items():
            z = int((m == 0).sum())
            per_tensor[name] = z / m.numel()
            zeros += z
            total += m.numel()
    return per_tensor, (zeros / total if total else 0.0)
