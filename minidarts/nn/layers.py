"""The layers DARTS needs, shaped like torch.nn: Conv2d, Linear, BatchNorm,
ReLU, Dropout, Identity, Flatten, the pools and the containers Sequential and
ModuleList."""

import math
from collections import OrderedDict

from ..engine import backend
from ..engine.autograd import Tensor
from . import functional as F
from . import init
from .arguments import pair
from .module import Module, Parameter, _empty, note_change

# --- layers with weights ---------------------------------------------------------------


class Conv2d(Module):
    """2-D convolution (F.conv2d) with weight (out, in/groups, kh, kw) and bias (out).

    Initialised as PyTorch: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
    fan_in = in/groups * kh * kw (kaiming_uniform_ with a = sqrt(5))."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        rng=None,
        device=None,
    ):
        super().__init__()
        for name, v in [("in_channels", in_channels), ("out_channels", out_channels)]:
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {v!r}")
        if (
            not isinstance(groups, int)
            or groups < 1
            or in_channels % groups
            or out_channels % groups
        ):
            raise ValueError(
                f"Conv2d: groups ({groups!r}) must be a positive int dividing in_channels "
                f"({in_channels}) and out_channels ({out_channels})"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.padding = pair(padding, "padding", "Conv2d", 0)
        self.dilation = pair(dilation, "dilation", "Conv2d", 1)
        shape = (out_channels, in_channels // groups) + self.kernel_size
        self.weight = Parameter(_empty(shape, device))
        self.register_parameter("bias", Parameter(_empty(out_channels, device)) if bias else None)
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        """Draw the PyTorch default initialisation (see the class docstring)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}, padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        return s + ("" if self.bias is not None else ", bias=False")


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features); initialised as PyTorch:
    W and b ~ U(-1/sqrt(in_features), 1/sqrt(in_features))."""

    def __init__(self, in_features, out_features, bias=True, rng=None, device=None):
        super().__init__()
        for name, v in [("in_features", in_features), ("out_features", out_features)]:
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"Linear: {name} must be a positive int, got {v!r}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_empty((out_features, in_features), device))
        self.register_parameter("bias", Parameter(_empty(out_features, device)) if bias else None)
        self.reset_parameters(rng)

    def reset_parameters(self, rng=None):
        """Draw the PyTorch default initialisation (see the class docstring)."""
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound, rng=rng)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}" + (
            "" if self.bias is not None else ", bias=False"
        )


class _BatchNorm(Module):
    """Batch normalisation over channel axis 1 (see F.batch_norm for the equations).

    weight = 1 and bias = 0 when affine; buffers running_mean = 0, running_var = 1
    and num_batches_tracked = 0 when track_running_stats. In training mode each call
    normalises with the batch statistics and updates the running ones (momentum=None:
    a cumulative average, factor 1 / num_batches_tracked); in eval mode it uses the
    running statistics (or, without them, the batch's)."""

    _dims = ()  # the input ranks the subclass accepts

    def __init__(
        self,
        num_features,
        eps=1e-5,
        momentum=0.1,
        affine=True,
        track_running_stats=True,
        device=None,
    ):
        super().__init__()
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(
                f"{type(self).__name__}: num_features must be a positive int, got {num_features!r}"
            )
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(_empty(num_features, device) + 1)
            self.bias = Parameter(_empty(num_features, device))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            xp = backend.array_module(device)
            self.register_buffer("running_mean", Tensor(_empty(num_features, device)))
            self.register_buffer("running_var", Tensor(_empty(num_features, device) + 1))
            self.register_buffer("num_batches_tracked", Tensor(xp.zeros((), dtype=backend.int64)))
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)

    def reset_running_stats(self):
        """Running mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            init.zeros_(self.running_mean)
            init.ones_(self.running_var)
            self.num_batches_tracked.data[...] = 0

    def forward(self, x):
        return F.batch_norm(x, **self.batch_norm_args(x))

    def batch_norm_args(self, x):
        """The arguments of this call's F.batch_norm(x, ...), as a dict (counting the
        batch in num_batches_tracked when training): what forward passes, and what a
        fused kernel that ends in this layer (darts/fast_ops.py) needs."""
        if x.ndim not in self._dims:
            dims = " or ".join(f"{d}D" for d in self._dims)
            raise ValueError(f"{type(self).__name__}: expected {dims} input (got {x.ndim}D input)")
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:
                factor = 1.0 / int(self.num_batches_tracked.data)
        # Batch statistics in training, and in eval when there are no running ones.
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return dict(
            running_mean=self.running_mean if track else None,
            running_var=self.running_var if track else None,
            weight=self.weight,
            bias=self.bias,
            training=use_batch,
            momentum=factor,
            eps=self.eps,
        )

    def extra_repr(self):
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) inputs, per channel (as torch.nn.BatchNorm2d)."""

    _dims = (4,)


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) inputs, per channel."""

    _dims = (2, 3)


# --- layers without weights --------------------------------------------------------------


class ReLU(Module):
    """y = max(x, 0). `inplace` is accepted for PyTorch compatibility and ignored (the
    engine never overwrites arrays in place)."""

    def __init__(self, inplace=False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class Dropout(Module):
    """F.dropout as a layer, as torch.nn.Dropout: in train() mode each element is zeroed
    with probability p and the rest scaled by 1 / (1 - p); in eval() mode it is the
    identity. Masks come from `rng` (a numpy Generator) if given, else from the global
    generator (minidarts.manual_seed), so a seeded run repeats them. `inplace` is
    accepted and ignored, as ReLU's."""

    def __init__(self, p=0.5, inplace=False, rng=None):
        super().__init__()
        if isinstance(p, bool) or not 0 <= p <= 1:
            raise ValueError(f"Dropout: p must be a probability in [0, 1], got {p!r}")
        self.p, self.rng = p, rng

    def forward(self, x):
        return F.dropout(x, self.p, self.training, rng=self.rng)

    def extra_repr(self):
        return f"p={self.p}"


class Identity(Module):
    """y = x; any constructor arguments are ignored, as in PyTorch."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, x):
        return x


class Flatten(Module):
    """Flattens dims start_dim..end: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = start_dim

    def forward(self, x):
        return x.flatten(self.start_dim)


class MaxPool2d(Module):
    """F.max_pool2d as a layer."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    """F.avg_pool2d as a layer."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def extra_repr(self):
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"count_include_pad={self.count_include_pad}"
        )


class AdaptiveAvgPool2d(Module):
    """F.adaptive_avg_pool2d as a layer (output_size 1: global average pooling)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


# --- containers ----------------------------------------------------------------------------


class Sequential(Module):
    """Modules applied in order, y = m_k(...m_2(m_1(x))); registered as '0', '1', ...
    (or under the keys of an OrderedDict given as the only argument)."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            for name, m in modules[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(modules):
                self.add_module(str(i), m)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        items = list(self._modules.items())
        if isinstance(index, slice):
            return Sequential(OrderedDict(items[index]))
        return items[index][1]

    def append(self, module):
        """Add `module` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x


class ModuleList(Module):
    """A list of modules, registered as '0', '1', ... so their parameters belong to the
    parent (a plain Python list would hide them)."""

    def __init__(self, modules=None):
        super().__init__()
        if modules is not None:
            self.extend(modules)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        values = list(self._modules.values())
        if isinstance(index, slice):
            return ModuleList(values[index])
        return values[index]

    def __setitem__(self, index, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList: expected a Module, got {type(module).__name__}")
        self._modules[list(self._modules)[index]] = module  # same key, same place
        note_change()

    def append(self, module):
        """Add `module` at the end; returns self."""
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules):
        """Append every module of an iterable; returns self."""
        for m in modules:
            self.append(m)
        return self

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(): iterate over it instead")
