"""bench/op_breakdown.py: the dispatch-level timer sorts every kernel of a forward and
backward, autograd's backward kernels included, into its kind of operator."""
import torch
import torch.nn.functional as F

from bench.op_breakdown import OpTimer, kind_of


def test_kinds_of_the_convnet_kernels():
    assert kind_of("aten.convolution_backward.default.") == "conv"
    assert kind_of("aten.native_batch_norm_backward.default.") == "batch_norm"
    assert kind_of("aten.max_pool2d_with_indices_backward.default.") == "pool"
    assert kind_of("aten.threshold_backward.default.") == "relu"
    assert kind_of("aten.leaky_relu_backward.default.") == "relu"
    assert kind_of("aten.mm.default.") == "linear"
    assert kind_of("aten.addmm.default.") == "linear"
    assert kind_of("aten.add.Tensor.") == "other"


def test_the_timer_sees_the_backward_kernels():
    x = torch.randn(2, 3, 8, 8)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    timer = OpTimer()
    with timer:
        y = F.max_pool2d(F.relu(F.batch_norm(F.conv2d(x, w), None, None, training=True)), 2)
        y.sum().backward()
    assert {"conv", "batch_norm", "relu", "pool"} <= set(timer.seconds)
    assert all(s > 0 for s in timer.seconds.values())
    assert w.grad is not None and float(w.grad.abs().sum()) > 0
