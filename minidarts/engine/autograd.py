"""Reverse-mode automatic differentiation over arrays: `Tensor` and `Function`.

A `Tensor` wraps an array (`.data`, numpy or cupy) and remembers the `Function`
that produced it. Each Function has its forward and its backward side by side:

    class Exp(Function):
        def forward(self, x):            # arrays in, array out
            self.y = xp.exp(x)
            return self.y
        def backward(self, gy):          # dL/dy in, dL/dx out (one per input)
            return (gy * self.y,)

`loss.backward()` walks the graph from `loss` to the leaves in reverse
topological order, calling each backward once and summing the gradients of a
tensor that was used more than once (the chain rule's sum over paths):

    dL/dx = sum over every use y_k of x of  dL/dy_k * dy_k/dx

Only leaves (tensors made by the user, e.g. parameters) keep `.grad`; call
`retain_grad()` on an intermediate tensor to keep its gradient too.

The one import cycle of the package is here, on purpose: the ops (ops.py and the
four family files) are Functions and build Tensors, so they import this module;
and Tensor's methods (`x + y`, `x.sum()`, `x.reshape(...)`) are those ops, so this
module imports ops.py at its very end, once Tensor and Function exist.
"""

import contextlib

from . import backend, parallel

_grad_enabled = True


class no_grad:
    """Context manager (and decorator) that stops graph recording, as torch.no_grad."""

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = False
        return self

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, fn):
        def wrapped(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapped.__name__ = getattr(fn, "__name__", "wrapped")
        wrapped.__doc__ = getattr(fn, "__doc__", None)
        return wrapped


def is_grad_enabled():
    """True unless inside `no_grad()`."""
    return _grad_enabled


class Function:
    """One differentiable operation. Subclasses define `forward(*arrays, **options)`
    returning an array, and `backward(grad_out)` returning one gradient (array or
    None) per array input of forward. `apply` wraps both into the graph."""

    inputs = ()
    needs_input_grad = ()

    @classmethod
    def apply(cls, *inputs, **options):
        fn = cls()
        tensors = _as_tensors(inputs, cls.__name__)
        # Which inputs need a gradient, so a backward can skip work (as PyTorch's
        # ctx.needs_input_grad): e.g. no weight gradient in the architecture step.
        fn.needs_input_grad = tuple(_grad_enabled and t.requires_grad for t in tensors)
        out = fn.forward(*[t.data for t in tensors], **options)
        needs_grad = any(fn.needs_input_grad)
        result = Tensor(out, requires_grad=needs_grad)
        if needs_grad:
            fn.inputs = tensors
            result._ctx = fn
        return result

    def forward(self, *arrays, **options):
        raise NotImplementedError

    def backward(self, grad_out):
        raise NotImplementedError


def _as_tensors(inputs, opname):
    """Wrap Python numbers and arrays as constant tensors, on the device and with the
    floating dtype of the first real tensor among the inputs."""
    like = next((x for x in inputs if isinstance(x, Tensor)), None)
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            out.append(x)
        elif like is not None and backend.is_scalar(x):
            # a constant takes the tensor's dtype: float32 * np.float64(2) stays float32
            xp = backend.get_array_module(like.data)
            dtype = like.dtype if backend.is_floating(like.data) else backend.float32
            out.append(Tensor(xp.asarray(backend.to_numpy(x).item(), dtype=dtype)))
        elif backend.is_array(x):
            out.append(Tensor(x))
        else:
            raise TypeError(f"{opname}: cannot use an input of type {type(x).__name__}")
    return out


def _sum_grads(a, b):
    return b if a is None else a + b


def _deliver(t, g):
    """What backward does with the summed gradient g of tensor t: a leaf (or a tensor
    with retain_grad) adds it to .grad."""
    if t._ctx is None or t._retain:
        # copy: the same array may flow to several leaves, and optimisers
        # (clip_grad_norm_) scale .grad in place.
        t.grad = g.copy() if t.grad is None else t.grad + g


def _run_backward(fn, g):
    """fn.backward(g), checked: one gradient per input, each shaped like its input."""
    in_grads = fn.backward(g)
    if len(in_grads) != len(fn.inputs):
        raise RuntimeError(
            f"{type(fn).__name__}.backward returned {len(in_grads)} gradients "
            f"for {len(fn.inputs)} inputs"
        )
    for inp, ig in zip(fn.inputs, in_grads):
        if ig is not None and inp.requires_grad and tuple(ig.shape) != inp.shape:
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned a gradient of shape "
                f"{tuple(ig.shape)} for an input of shape {inp.shape}"
            )
    return in_grads


class Tensor:
    """An array with a gradient. Create with `minidarts.tensor(...)`."""

    __array_priority__ = 1000  # numpy_array * tensor goes to Tensor.__rmul__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.data
        if not backend.is_array(data):
            data = backend.asarray(data)
        if data.dtype.kind not in "biufc":  # text, objects, None: no arithmetic works on them
            raise TypeError(f"a tensor holds numbers, got data of dtype {data.dtype}")
        if requires_grad and not backend.is_floating(data):
            raise TypeError(
                f"only floating-point tensors can require gradients (got dtype {data.dtype})"
            )
        self.data = data
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._ctx = None  # the Function that produced this tensor, None for a leaf
        self._retain = False

    # --- array-like properties -------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    def size(self, dim=None):
        """The shape, as torch.Tensor.size: x.size() is the tuple of the dims, x.size(d)
        the length of dim d (negative d counts from the end). The element count is
        numel() (a NumPy array's .size)."""
        if dim is None:
            return self.shape
        if isinstance(dim, bool) or not isinstance(dim, int) or not -self.ndim <= dim < self.ndim:
            raise IndexError(
                f"size({dim!r}): dim out of range for a tensor of {self.ndim} dims "
                f"(expected an int in [{-self.ndim}, {self.ndim - 1}])"
            )
        return self.shape[dim]

    def numel(self):
        """The number of elements: the product of the dims (1 for a scalar)."""
        return int(self.data.size)

    @property
    def device(self):
        return backend.device_of(self.data)

    @property
    def is_leaf(self):
        return self._ctx is None

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({backend.to_numpy(self.data)!r}{grad})"

    def numpy(self):
        """The data as a NumPy array (copied off the GPU if needed)."""
        return backend.to_numpy(self.data)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self.numel() != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(-1)[0].item()

    def detach(self):
        """The same data, cut from the graph (no gradient flows through it)."""
        return Tensor(self.data)

    def to(self, device):
        """A copy on `device` ('cpu' or 'gpu'), cut from the graph."""
        return Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)

    def astype(self, dtype):
        """A copy with another dtype, cut from the graph."""
        return Tensor(self.data.astype(dtype), requires_grad=self.requires_grad)

    def zero_grad(self):
        self.grad = None

    def requires_grad_(self, requires_grad=True):
        """Set requires_grad in place and return self, as torch.Tensor.requires_grad_. Only
        a leaf's flag may change (an op's output requires grad because its inputs do),
        and only a floating-point tensor can require a gradient."""
        if not self.is_leaf:
            raise RuntimeError(
                "requires_grad_: only leaf tensors can change requires_grad (this one is the "
                "output of an op); use .detach() for a copy cut from the graph"
            )
        if requires_grad and not backend.is_floating(self.data):
            raise TypeError(
                f"only floating-point tensors can require gradients (got dtype {self.dtype})"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep `.grad` on this intermediate tensor after backward()."""
        self._retain = True
        return self

    # --- backpropagation -------------------------------------------------------
    def backward(self, grad=None):
        """Accumulate d(self)/d(leaf) into `.grad` of every leaf that requires it.

        `grad` is the gradient flowing into this tensor (dL/dself); it may be
        omitted only for a one-element tensor, where it is 1."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward() on a tensor that does not require grad: no input of the "
                "computation had requires_grad=True (or it ran under no_grad())"
            )
        xp = backend.get_array_module(self.data)
        if grad is None:
            if self.numel() != 1:
                raise RuntimeError(
                    f"backward() without a gradient needs a one-element tensor, got shape "
                    f"{self.shape}: reduce it first (e.g. .sum() or .mean()) or pass "
                    f"backward(grad) with an array of shape {self.shape}"
                )
            grad = xp.ones_like(self.data)
        else:
            grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, self.dtype)
            if tuple(grad.shape) != self.shape:
                raise ValueError(
                    f"backward(grad): grad has shape {tuple(grad.shape)}, expected {self.shape}"
                )

        order = _topological_order(self)[::-1]
        pays = backend.device_of(self.data) == "cpu" and parallel.pays(
            sum(t.data.size for t in order) / len(order)
        )
        if pays and parallel.num_threads() > 1:
            # the same loop on several threads, bit-identical (engine/parallel.py)
            parallel.run_backward(order, self, grad, _deliver, _run_backward)
            return
        # where it pays, the products as on the threads: the same bits on every count
        with parallel.products_on_calling_thread() if pays else contextlib.nullcontext():
            grads = {id(self): grad}
            for t in order:
                g = grads.pop(id(t), None)
                if g is None:
                    continue
                _deliver(t, g)
                if t._ctx is None:
                    continue
                fn = t._ctx
                for inp, ig in zip(fn.inputs, _run_backward(fn, g)):
                    if ig is None or not inp.requires_grad:
                        continue
                    grads[id(inp)] = _sum_grads(grads.get(id(inp)), ig)

    # --- operators and methods (defined in ops.py) -----------------------------
    def __add__(self, other):
        return _ops.add(self, other)

    def __radd__(self, other):
        return _ops.add(other, self)

    def __sub__(self, other):
        return _ops.sub(self, other)

    def __rsub__(self, other):
        return _ops.sub(other, self)

    def __mul__(self, other):
        return _ops.mul(self, other)

    def __rmul__(self, other):
        return _ops.mul(other, self)

    def __truediv__(self, other):
        return _ops.div(self, other)

    def __rtruediv__(self, other):
        return _ops.div(other, self)

    def __neg__(self):
        return _ops.neg(self)

    def __pow__(self, exponent):
        return _ops.pow(self, exponent)

    def __rpow__(self, base):
        return _ops.pow(base, self)

    def __matmul__(self, other):
        return _ops.matmul(self, other)

    def __rmatmul__(self, other):
        return _ops.matmul(other, self)

    def __getitem__(self, index):
        return _ops.getitem(self, index)

    def exp(self):
        return _ops.exp(self)

    def log(self):
        return _ops.log(self)

    def sqrt(self):
        return _ops.sqrt(self)

    def relu(self):
        return _ops.relu(self)

    def sigmoid(self):
        return _ops.sigmoid(self)

    def tanh(self):
        return _ops.tanh(self)

    def sum(self, dim=None, keepdim=False):
        return _ops.sum(self, dim, keepdim)

    def mean(self, dim=None, keepdim=False):
        return _ops.mean(self, dim, keepdim)

    def max(self, dim=None, keepdim=False):
        return _ops.max(self, dim, keepdim)

    def argmax(self, dim=None):
        """Indices of the maxima (not differentiable), as a Tensor of int64."""
        return Tensor(self.data.argmax(axis=dim))

    def reshape(self, *shape):
        return _ops.reshape(self, *shape)

    view = reshape

    def flatten(self, start_dim=0):
        return _ops.reshape(self, *self.shape[:start_dim], -1)

    def transpose(self, dim0, dim1):
        return _ops.transpose(self, dim0, dim1)

    def permute(self, *dims):
        return _ops.permute(self, *dims)

    @property
    def T(self):
        return _ops.permute(self, *reversed(range(self.ndim)))

    def softmax(self, dim):
        return _ops.softmax(self, dim)

    def log_softmax(self, dim):
        return _ops.log_softmax(self, dim)


def _topological_order(root):
    """Tensors reachable from `root`, each after all of its inputs.

    An explicit stack instead of recursion, so a graph 10,000 ops deep does not
    hit Python's recursion limit."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        t, inputs_done = stack.pop()
        if inputs_done:
            order.append(t)
            continue
        if id(t) in visited:
            continue
        visited.add(id(t))
        stack.append((t, True))
        if t._ctx is not None:
            for inp in t._ctx.inputs:
                if inp.requires_grad and id(inp) not in visited:
                    stack.append((inp, False))
    return order


def tensor(data, requires_grad=False, dtype=None, device=None):
    """A new leaf tensor, as torch.tensor. Floating data defaults to float32.

    data: a number, nested list, numpy/cupy array or Tensor (copied)."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None and not backend.is_array(data):
        # Python numbers and lists: floats become float32 (torch's default), ints int64.
        probe = backend.numpy.asarray(data)
        dtype = backend.float32 if backend.is_floating(probe) else probe.dtype
    arr = backend.asarray(data, dtype=dtype, device=device)
    if arr is data:
        arr = arr.copy()
    return Tensor(arr, requires_grad=requires_grad)


from . import ops as _ops  # noqa: E402  (ops needs Tensor and Function defined above)
