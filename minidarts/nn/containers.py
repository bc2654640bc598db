"""Containers of parameters, shaped like torch.nn.ParameterDict / ParameterList.

A plain dict or list of Parameters assigned to a Module attribute is invisible to
the tree: parameters(), state_dict() and to() would skip it. These containers are
Modules whose entries are registered parameters, so

    class H(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = nn.ParameterDict({"normal": nn.Parameter(a), "reduce": nn.Parameter(b)})

    list(dict(H().named_parameters()))  ->  ['b1.normal', 'b1.reduce']

The hypernetworks (darts/hypernet.py) keep their matrices in them.
"""

from .module import Module, Parameter, note_change


def _as_parameter(value, where):
    if isinstance(value, Parameter):
        return value
    raise TypeError(f"{where}: expected an nn.Parameter, got {type(value).__name__}")


class ParameterDict(Module):
    """An ordered dict from string keys to Parameters (torch.nn.ParameterDict): d[key],
    d[key] = p, `key in d`, len(d), iteration over keys, keys() / values() / items(),
    update(). Entries keep their insertion order; state_dict keys are 'prefix.key'.

    Unlike PyTorch, a value that is not an nn.Parameter is refused rather than wrapped:
    wrapping would silently make a constant learnable."""

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key):
        if key not in self._parameters:
            raise KeyError(f"ParameterDict has no key {key!r}; it has {list(self._parameters)}")
        return self._parameters[key]

    def __setitem__(self, key, value):
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f"ParameterDict keys are non-empty strings without '.', got {key!r}")
        if key in self.__dict__:  # 'training', '_parameters', ...: the module's own state
            raise KeyError(f"ParameterDict: {key!r} is an attribute of the module itself")
        value = _as_parameter(value, f"ParameterDict[{key!r}]")
        if key in self._parameters:
            note_change()
            self._parameters[key] = value  # a replaced entry keeps its place, as in torch
        else:
            self.register_parameter(key, value)

    def __contains__(self, key):
        return key in self._parameters

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters)

    def keys(self):
        """The keys, in insertion order."""
        return self._parameters.keys()

    def values(self):
        """The Parameters, in insertion order."""
        return self._parameters.values()

    def items(self):
        """(key, Parameter) pairs, in insertion order."""
        return self._parameters.items()

    def update(self, parameters):
        """Add or replace entries from a mapping or an iterable of (key, Parameter)."""
        pairs = parameters.items() if hasattr(parameters, "items") else parameters
        for key, value in pairs:
            self[key] = value

    def extra_repr(self):
        return ", ".join(f"{k}: {tuple(p.shape)}" for k, p in self.items())

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ParameterDict has no forward(): index it instead")


class ParameterList(Module):
    """A list of Parameters (torch.nn.ParameterList), registered as '0', '1', ...:
    p[i] (negative i and slices too), len, iteration, append(), extend()."""

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.extend(parameters)

    def __len__(self):
        return len(self._parameters)

    def __iter__(self):
        return iter(self._parameters.values())

    def __getitem__(self, index):
        values = list(self._parameters.values())
        if isinstance(index, slice):
            return ParameterList(values[index])
        return values[index]

    def __setitem__(self, index, value):
        key = list(self._parameters)[index]  # IndexError for an index out of range
        self._parameters[key] = _as_parameter(value, f"ParameterList[{index}]")
        note_change()

    def append(self, value):
        """Add a Parameter at the end; returns self."""
        self.register_parameter(str(len(self)), _as_parameter(value, "ParameterList.append"))
        return self

    def extend(self, values):
        """Append every Parameter of an iterable; returns self."""
        for v in values:
            self.append(v)
        return self

    def extra_repr(self):
        return ", ".join(str(tuple(p.shape)) for p in self)

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ParameterList has no forward(): iterate over it instead")
