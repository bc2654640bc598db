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

from collections import OrderedDict, namedtuple

from ..engine import backend
from ..engine.autograd import Tensor

# --- Parameter and Module ------------------------------------------------------------


class Parameter(Tensor):
    """A Tensor that is a learned weight of a Module: requires_grad=True by default,
    and registered by Module.__setattr__."""

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()


# Moves whenever any module is changed through its own methods (an attribute, a
# parameter, buffer or sub-module set or removed, train/eval, to()): a cache of checks
# on modules (darts/fast_checks.py) and the lists of parameters() and buffers()
# (_named_members below) are valid while it stays the same.
_changes = [0]


def changes():
    """A number that moves whenever any Module is changed through the Module API."""
    return _changes[0]


def note_change():
    """Move changes(): for a container that changes its registry directly."""
    _changes[0] += 1


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
        _changes[0] += 1
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
        _changes[0] += 1
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
        _changes[0] += 1
        self._forget(name)
        self._parameters[name] = param

    def register_buffer(self, name, tensor, persistent=True):
        """Register a state tensor that is not learned (e.g. running statistics): it
        moves with to(), and is saved in state_dict() unless persistent=False."""
        _changes[0] += 1
        self._forget(name)
        self._buffers[name] = _as_buffer(tensor, name)
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        """Register a sub-module under `name` (what attribute assignment does)."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module({name!r}): expected a Module, got {type(module).__name__}")
        _changes[0] += 1
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
        # The walk over the search network's ~750 modules took ~3 ms, and a search step
        # asks for its parameters several times (zero_grad, clipping, the architecture
        # step): the list is kept while no module changes (changes() above).
        cache = self.__dict__.get("_members")
        if cache is None or cache[0] != _changes[0]:
            cache = (_changes[0], {})
            object.__setattr__(self, "_members", cache)  # not a change of the module
        members = cache[1].get((registry, recurse))
        if members is None:
            members = cache[1][registry, recurse] = list(self._walk_members(registry, recurse))
        return iter(members)

    def _walk_members(self, registry, recurse):
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
        """The Parameters of this module and (recurse=True) its descendants. The list is
        kept until a module changes through the Module API (changes())."""
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
        return sum(p.numel() for p in self.parameters())

    # --- modes, gradients, calling ---------------------------------------------------
    def train(self, mode=True):
        """Set training mode (BatchNorm uses batch statistics) on the whole tree."""
        _changes[0] += 1
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        """Set evaluation mode (BatchNorm uses its running statistics): train(False)."""
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad of every parameter of the tree, as torch.nn.Module.requires_grad_
        (False freezes them: backward() then leaves their .grad alone and skips their
        weight gradients). Returns self."""
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

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
        mismatches raise one ValueError that counts each kind and names the first few
        of each. Returns (missing, unexpected), as PyTorch."""
        return self._load_tensors(OrderedDict(self._state_tensors()), state_dict, strict)

    def _load_tensors(self, own, state_dict, strict):
        """load_state_dict into the tensors of `own` (dotted name -> tensor)."""
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        problems, mismatched = [], []
        if strict and missing:
            problems.append(_some("missing key", missing))
        if strict and unexpected:
            problems.append(_some("unexpected key", unexpected))
        values = {}
        for name, t in own.items():
            if name not in state_dict:
                continue
            value = state_dict[name]
            value = value.data if isinstance(value, Tensor) else value
            if not backend.is_array(value):
                value = backend.numpy.asarray(value)
            if tuple(value.shape) != t.shape:
                mismatched.append(f"{name} (saved {tuple(value.shape)}, here {t.shape})")
            values[name] = value
        if mismatched:
            problems.append(_some("shape mismatch", mismatched, plural="shape mismatches"))
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
        _changes[0] += 1
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


def _some(what, items, plural=None, limit=3):
    """'2 missing keys: a, b' or '40 missing keys: a, b, c and 37 more': a count and at
    most `limit` names, so a wrong checkpoint does not print hundreds of keys."""
    n = len(items)
    head = f"{n} {what if n == 1 else plural or what + 's'}: {', '.join(items[:limit])}"
    return head + (f" and {n - limit} more" if n > limit else "")


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
