"""Method presets: each name expands to the original's flags (DomainBed-style registry).

``--method NAME`` sets these flags before consistency checks; the run records the
method name in config.json. A run without ``--method`` gets the name that describes
its flags (``describe``), so run folders and reports stay readable.
"""

METHODS = {
    "maml": {},
    "anil": {"anil": True},
    "boil": {"boil": True},
    "meta-sgd": {"gradient_mask": True, "meta_sgd_linear": True, "meta_sgd_init": True},
    "sparse-maml": {"gradient_mask": True},
    "sparse-relu-maml": {"gradient_mask": True, "meta_relu_through": True,
                         "meta_constant_init": True},
}

MASK_KIND_FLAGS = {"meta_relu_through": "relu_through", "meta_relu": "relu",
                   "meta_sgd_linear": "linear", "meta_exp": "exp"}


def apply_preset(args):
    """Set the flags of ``args.method`` (if any) on the namespace, in place."""
    for flag, value in METHODS.get(args.method or "", {}).items():
        setattr(args, flag, value)
    return args


def mask_kind(args):
    """The mask kind selected by the flags: binary unless a Meta-SGD-style flag is set."""
    for flag, kind in MASK_KIND_FLAGS.items():
        if getattr(args, flag):
            return kind
    return "binary"


def describe(args):
    """A method name for the flags: a preset name when they match one exactly."""
    masked = args.gradient_mask or args.weight_mask
    if args.weight_mask:
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
