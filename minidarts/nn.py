"""Layers, shaped like torch.nn: Parameter, Module and the layers DARTS needs.

A Module is a tree: assigning a Parameter, a Module or a buffer to an attribute
registers it (Module.__setattr__), so

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)

    list(Net().named_parameters())  ->  conv.weight, conv.bias, bn.weight, bn.bias

and parameters(), state_dict(), train()/eval(), zero_grad() and to(device)
walk the tree. Buffers are tensors that are state but not learned (BatchNorm's
running statistics): saved in state_dict, never in parameters().

Initial weights are drawn from the global generator (minidarts.manual_seed) or
from a layer's own `rng=` (a numpy Generator), on the CPU, then moved to the
default device (backend.default_device()) as float32.
"""

import math
from collections import OrderedDict, namedtuple

from . import backend, init
from . import functional as F
from .arguments import pair
from .autograd import Tensor
from .random import manual_seed

# --- Parameter and Module ------------------------------------------------------------


class Parameter(Tensor):
    """A Tensor that is a learned weight of a Module: requires_grad=True by default,
    and registered by Module.__setattr__."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


def _empty(shape, device=None):
    """A float32 array of zeros on `device` (default: the default device), to be filled
    by an initialiser."""
    return backend.asarray(backend.numpy.zeros(shape), dtype=backend.float32, device=device)


IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer (as torch.nn.Module). Subclasses call
    super().__init__() first, assign their parameters / sub-modules as attributes
    and define forward(); calling the module calls forward."""

    def __init__(self):
        # object.__setattr__: these four must exist before our __setattr__ can run.
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # --- registration --------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() is called: call "
                f"super().__init__() first in {type(self).__name__}.__init__"
            )
        if isinstance(value, Parameter):
            self._forget(name)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name)
            self._modules[name] = value
        elif name in self._parameters:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name} is a parameter: assign an nn.Parameter "
                    f"or None, not a {type(value).__name__}"
                )
            self._parameters[name] = None
        elif name in self._modules:
            if value is not None:
                raise TypeError(
                    f"{type(self).__name__}.{name} is a sub-module: assign a Module or None, "
                    f"not a {type(value).__name__}"
                )
            self._modules[name] = None
        elif name in self._buffers:
            self._buffers[name] = _as_buffer(value, name)
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name):
        # Only called when normal lookup fails: registered things live in the dicts.
        for registry in ("_parameters", "_buffers", "_modules"):
            d = self.__dict__.get(registry)
            if d is not None and name in d:
                return d[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name):
        """Remove `name` from every registry and from the instance dict."""
        found = False
        for d in (self._parameters, self._buffers, self._modules, self.__dict__):
            if name in d:
                del d[name]
                found = True
        self._non_persistent.discard(name)
        return found

    def register_parameter(self, name, param):
        """Register `param` (a Parameter, or None for an absent one, e.g. bias=False)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter({name!r}): expected an nn.Parameter or None, got "
                f"{type(param).__name__}"
            )
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register a state tensor that is not learned (e.g. running statistics): it
        moves with to(), and is saved in state_dict() unless persistent=False."""
        self._forget(name)
        self._buffers[name] = _as_buffer(tensor, name)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        """Register a sub-module under `name` (what attribute assignment does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        self._forget(name)
        self._modules[name] = module

    # --- walking the tree ------------------------------------------------------------
    def named_modules(self, prefix=""):
        """(dotted name, module) for this module ('' for itself) and every descendant,
        depth first, each module once."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [
                (f"{name}.{k}" if name else k, m)
                for k, m in module._modules.items()
                if m is not None
            ]
            stack.extend(reversed(children))

    def modules(self):
        """This module and every descendant."""
        for _, m in self.named_modules():
            yield m

    def named_children(self):
        """(name, module) of the direct sub-modules."""
        for name, m in self._modules.items():
            if m is not None:
                yield name, m

    def children(self):
        """The direct sub-modules."""
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry, recurse):
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, t in getattr(module, registry).items():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                yield (f"{prefix}.{name}" if prefix else name), t

    def named_parameters(self, recurse=True):
        """(dotted name, Parameter) pairs, e.g. ('cells.0.conv.weight', ...); a parameter
        shared by several modules appears once."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse=True):
        """The Parameters of this module and (recurse=True) its descendants."""
        for _, p in self.named_parameters(recurse):
            yield p

    def named_buffers(self, recurse=True):
        """(dotted name, buffer tensor) pairs."""
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse=True):
        """The buffer tensors (running statistics and the like)."""
        for _, b in self.named_buffers(recurse):
            yield b

    def num_parameters(self):
        """The number of learned scalars: the sum of the sizes of parameters()."""
        return sum(p.size for p in self.parameters())

    # --- modes, gradients, calling ---------------------------------------------------
    def train(self, mode=True):
        """Set training mode (BatchNorm uses batch statistics) on the whole tree."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode (BatchNorm uses its running statistics): train(False)."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Clear the gradients of every parameter (set to None, or to zeros in place)."""
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad[...] = 0

    def apply(self, fn):
        """Call fn(module) on every descendant and then on this module; returns self."""
        for m in reversed(list(self.modules())):
            fn(m)
        return self

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- state -------------------------------------------------------------------------
    def _state_tensors(self):
        """(dotted name, tensor) of everything state_dict() saves: per module, its own
        parameters, then its persistent buffers, in registration order."""
        for prefix, module in self.named_modules():
            for registry in ("_parameters", "_buffers"):
                for name, t in getattr(module, registry).items():
                    if t is None or (registry == "_buffers" and name in module._non_persistent):
                        continue
                    yield (f"{prefix}.{name}" if prefix else name), t

    def state_dict(self):
        """An OrderedDict from dotted names to NumPy copies of the parameters and
        persistent buffers: plain arrays that np.savez can write."""
        out = OrderedDict()
        for name, t in self._state_tensors():
            arr = backend.to_numpy(t.data)
            out[name] = arr.copy() if arr is t.data else arr
        return out

    def load_state_dict(self, state_dict, strict=True):
        """Copy values (arrays, Tensors or numbers) into the parameters and buffers, in
        place, keeping their dtype and device. Every key and shape is checked before
        anything is written: unexpected or missing keys (strict=True) and shape
        mismatches raise a ValueError listing them all. Returns (missing, unexpected)."""
        own = OrderedDict(self._state_tensors())
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {', '.join(missing)}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {', '.join(unexpected)}")
        values = {}
        for name, t in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            if not backend.is_array(value):
                value = backend.numpy.asarray(value)
            if tuple(value.shape) != t.shape:
                problems.append(
                    f"shape mismatch for {name}: the checkpoint has {tuple(value.shape)}, the "
                    f"module has {t.shape}"
                )
            values[name] = value
        if problems:
            raise ValueError(
                f"load_state_dict into {type(self).__name__} failed: " + "; ".join(problems)
            )
        for name, value in values.items():
            t = own[name]
            t.data[...] = backend.asarray(value, dtype=t.dtype, device=t.device)
        return IncompatibleKeys(missing, unexpected)

    def to(self, device):
        """Move every parameter, gradient and buffer to `device` ('cpu' or 'gpu'), in
        place (the Parameter objects stay the same); returns self. Build optimisers
        after moving, as in PyTorch."""
        device = backend.check_device(device)
        for t in list(self.parameters()) + list(self.buffers()):
            t.data = backend.to_device(t.data, device)
            if t.grad is not None:
                t.grad = backend.to_device(t.grad, device)
        return self

    # --- printing ----------------------------------------------------------------------
    def extra_repr(self):
        """The part inside the parentheses of this module's repr."""
        return ""

    def __repr__(self):
        lines = [f"({name}): " + repr(m).replace("\n", "\n  ") for name, m in self.named_children()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _as_buffer(value, name):
    if value is None or isinstance(value, Tensor):
        return value
    if backend.is_array(value):
        return Tensor(value)
    raise TypeError(
        f"buffer {name!r} must be a Tensor, an array or None, got {type(value).__name__}"
    )


def count_parameters(module):
    """The number of learned scalars of `module`: sum of the sizes of its parameters."""
    return module.num_parameters()


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
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d")
        self.stride = pair(stride, "stride", "Conv2d")
        self.padding = pair(padding, "padding", "Conv2d")
        self.dilation = pair(dilation, "dilation", "Conv2d")
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
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
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


__all__ = [
    "AdaptiveAvgPool2d",
    "AvgPool2d",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Flatten",
    "Identity",
    "Linear",
    "MaxPool2d",
    "Module",
    "ModuleList",
    "Parameter",
    "ReLU",
    "Sequential",
    "count_parameters",
    "init",
    "manual_seed",
]
