"""Method presets of the command line: each name sets the original's flags.

``--method NAME`` sets the flags that define a method (``METHOD_FLAGS``): those of its
preset to true, the others to false (a method without a mask also clears the mask's
init flags). They act as defaults, above a --config file and
below explicit flags, so ``--config FILE --method maml`` runs MAML with FILE's other
settings and ``--no-FLAG`` can still switch a preset flag off. The run records the
method name in config.json; a run without ``--method`` gets the name that describes its
flags (``describe``), so run folders and reports stay readable. The flags then select a
mask mode and a mask kind (``mask_mode_name``, ``mask_kind``).
"""
from maml.mask_modes import MASK_MODES

# The modes the original's flags select (mask_mode_name); others come from --mask_mode.
BUILT_IN_MODES = ("none", "gradient", "learning_rate", "weight")
MASK_KIND_FLAGS = {"meta_relu_through": "relu_through", "meta_relu": "relu",
                   "meta_sgd_linear": "linear", "meta_exp": "exp"}
METHOD_FLAGS = ("gradient_mask", "weight_mask", "anil", "boil", *MASK_KIND_FLAGS)

_PRESETS = {
    "maml": (),
    "anil": ("anil",),
    "boil": ("boil",),
    "meta-sgd": ("gradient_mask", "meta_sgd_linear", "meta_sgd_init"),
    "sparse-maml": ("gradient_mask",),
    "sparse-relu-maml": ("gradient_mask", "meta_relu_through", "meta_constant_init"),
}
# A method without a mask also clears the mask's settings (a config's leftovers).
_NO_MASK = {"kaiming_init": False, "meta_sgd_init": False, "meta_constant_init": False,
            "gradient_mask_plus": False, "init_shift": 0.0, "plus_output_shift": 0.0}
METHODS = {name: {**{flag: False for flag in METHOD_FLAGS}, **{flag: True for flag in on},
                  **({} if "gradient_mask" in on else _NO_MASK)}
           for name, on in _PRESETS.items()}


def preset(method):
    """{flag: value} that ``--method`` sets ({} for None or an unknown name)."""
    return dict(METHODS.get(method or "", {}))


def mask_kind(args):
    """The mask kind selected by the flags: binary unless a Meta-SGD-style flag is set."""
    for flag, kind in MASK_KIND_FLAGS.items():
        if getattr(args, flag):
            return kind
    return "binary"


def mask_mode_name(args):
    """The key of ``maml.mask_modes.MASK_MODES`` the flags select: ``--mask_mode`` when
    given, else weight (``--weight_mask``), learning_rate (``--gradient_mask`` with a
    Meta-SGD-style kind), gradient (``--gradient_mask``) or none."""
    if args.mask_mode is not None:
        return args.mask_mode
    if args.weight_mask:
        return "weight"
    if args.gradient_mask:
        return "gradient" if mask_kind(args) == "binary" else "learning_rate"
    return "none"


def mask_init(args):
    """The mask-logit init the flags select (``maml.masks.INITS``)."""
    return ("constant" if args.meta_constant_init else "meta_sgd" if args.meta_sgd_init
            else "kaiming" if args.kaiming_init else "uniform")


def describe(args):
    """A method name for the flags: a preset name when they match one exactly."""
    mode = mask_mode_name(args)
    masked = MASK_MODES[mode].uses_mask
    if mode not in BUILT_IN_MODES:           # a mode added by the README's "Extending"
        name = f"mask-mode-{mode.replace('_', '-')}"
    elif args.weight_mask or mode == "weight":
        name = "weight-mask"
    elif not masked:
        name = "anil" if args.anil else "boil" if args.boil else "maml"
    else:
        kind = mask_kind(args)
        if kind == "binary":
            name = "sparse-maml"
        elif kind == "relu_through" and args.meta_constant_init:
            name = "sparse-relu-maml"
        elif kind == "linear":
            name = "meta-sgd"
        else:
            name = f"mask-{kind.replace('_', '-')}"
    if args.gradient_mask_plus:
        name += "-plus"
    return name
