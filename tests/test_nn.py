"""minidarts.nn: registration, names, state_dict, modes, initialisation, containers."""

import math
from collections import OrderedDict

import numpy as np
import pytest

import minidarts as md
import minidarts.nn.functional as F
from minidarts import nn


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4, affine=False))
        self.blocks = nn.ModuleList([Block(4), Block(4)])
        self.head = nn.Linear(4, 3)
        self.scale = nn.Parameter(md.tensor([2.0]))
        self.register_buffer("steps", md.tensor(np.zeros(1, np.float32)))
        self.note = md.tensor([1.0])  # a plain tensor attribute: not registered
        self.plain_list = [nn.Linear(2, 2)]  # a plain list hides its modules, as in PyTorch

    def forward(self, x):
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(F.adaptive_avg_pool2d(x, 1).flatten(1)) * self.scale


PARAM_NAMES = [
    "scale",
    "stem.0.weight",
    "stem.0.bias",
    "blocks.0.conv.weight",
    "blocks.0.bn.weight",
    "blocks.0.bn.bias",
    "blocks.1.conv.weight",
    "blocks.1.bn.weight",
    "blocks.1.bn.bias",
    "head.weight",
    "head.bias",
]


def test_registration_and_dotted_names():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == PARAM_NAMES
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())
    assert [n for n, _ in net.named_children()] == ["stem", "blocks", "head"]
    # net; stem and its 2 layers; blocks, its 2 blocks and their conv and bn; head
    assert len(list(net.modules())) == 1 + 3 + (1 + 2 * 3) + 1
    assert [n for n, _ in net.named_buffers()] == [
        "steps",
        "stem.1.running_mean",
        "stem.1.running_var",
        "stem.1.num_batches_tracked",
        "blocks.0.bn.running_mean",
        "blocks.0.bn.running_var",
        "blocks.0.bn.num_batches_tracked",
        "blocks.1.bn.running_mean",
        "blocks.1.bn.running_var",
        "blocks.1.bn.num_batches_tracked",
    ]
    assert net.blocks[1].bn.weight is dict(net.named_parameters())["blocks.1.bn.weight"]
    # Replacing a parameter keeps its place; deleting removes it.
    net.head.bias = nn.Parameter(md.tensor(np.ones(3, np.float32)))
    assert [n for n, _ in net.named_parameters()] == PARAM_NAMES
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    with pytest.raises(AttributeError):
        net.scale  # noqa: B018


def test_shared_parameters_are_listed_once():
    lin = nn.Linear(3, 3)
    seq = nn.Sequential(lin, nn.ReLU(), lin)
    assert len(list(seq.parameters())) == 2
    assert nn.count_parameters(seq) == 12


def test_parameter_lists_follow_every_change_of_the_tree(monkeypatch):
    """parameters() is kept between changes (nn/module.py's _named_members): asked twice,
    the tree is walked once; every way of changing it through the API is seen."""
    net = nn.ModuleList([nn.Linear(3, 4), nn.BatchNorm2d(2), nn.Linear(4, 2)])
    names = [n for n, _ in net.named_parameters()]
    walks = []
    walk = nn.Module.named_modules
    monkeypatch.setattr(
        nn.Module, "named_modules", lambda *a, **k: walks.append(1) or walk(*a, **k)
    )
    assert [n for n, _ in net.named_parameters()] == names and walks == []
    assert len(list(net.buffers())) == 3 and len(walks) == 1  # another registry: one walk

    def listed():
        return [n for n, _ in net.named_parameters()]

    extra = nn.Parameter(md.tensor(np.ones(2, np.float32)))
    net[0].scale = extra  # assigned
    assert "0.scale" in listed()
    del net[0].scale  # removed
    assert "0.scale" not in listed()
    net[1].register_parameter("shift", extra)
    assert "1.shift" in listed()
    wider = nn.Linear(4, 5)
    assert "2.weight" in listed()
    net[2] = wider  # a container's slot replaced
    assert [p.shape for n, p in net.named_parameters() if n.startswith("2.")] == [(5, 4), (5,)]
    table = nn.ParameterDict({"a": nn.Parameter(md.tensor(np.zeros(6, np.float32)))})
    net.add_module("table", table)
    other = nn.Parameter(md.tensor(np.zeros(3, np.float32)))
    assert "table.a" in listed()  # listed (and kept) before the change
    table["a"] = other  # a ParameterDict entry replaced in place
    assert dict(net.named_parameters())["table.a"] is other
    row = nn.ParameterList([nn.Parameter(md.tensor(np.zeros(4, np.float32)))])
    net.add_module("row", row)
    last = nn.Parameter(md.tensor(np.zeros(5, np.float32)))
    assert "row.0" in listed()
    row[0] = last  # a ParameterList entry replaced
    assert dict(net.named_parameters())["row.0"] is last


def test_assignment_errors():
    class Early(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(md.tensor([1.0]))

    with pytest.raises(AttributeError, match="super\\(\\).__init__"):
        Early()
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="nn.Parameter"):
        lin.weight = md.tensor(np.zeros((2, 2), np.float32))
    lin.bias = None  # an absent parameter is allowed
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin(md.tensor(np.ones((1, 2), np.float32))).shape == (1, 2)


def test_parameters_are_float32_on_the_default_device():
    for p in Net().parameters():
        assert p.dtype == np.float32 and p.device == md.backend.default_device()


def test_state_dict_round_trip():
    md.manual_seed(1)
    a = Net()
    a(md.tensor(np.random.default_rng(0).standard_normal((2, 1, 5, 5)), dtype=np.float32))
    sd = a.state_dict()
    assert isinstance(sd, OrderedDict)
    assert list(sd)[:4] == ["scale", "steps", "stem.0.weight", "stem.0.bias"]
    assert all(type(v) is np.ndarray for v in sd.values())
    assert (
        sd["stem.1.num_batches_tracked"].dtype == np.int64 and sd["stem.1.num_batches_tracked"] == 1
    )
    sd["head.bias"][...] = 99  # a copy: the module is unaffected
    assert not (a.head.bias.numpy() == 99).any()
    sd = a.state_dict()

    md.manual_seed(2)
    b = Net()
    weight = b.head.weight
    assert not np.array_equal(weight.numpy(), sd["head.weight"])
    b.load_state_dict(sd)
    assert b.head.weight is weight  # loaded in place: optimisers keep their references
    for (na, ta), (nb, tb) in zip(a._state_tensors(), b._state_tensors()):
        assert na == nb and ta.dtype == tb.dtype
        np.testing.assert_array_equal(ta.numpy(), tb.numpy())
    x = md.tensor(np.random.default_rng(1).standard_normal((2, 1, 5, 5)), dtype=np.float32)
    a.eval(), b.eval()
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_errors_name_the_keys_and_write_nothing():
    net = Net()
    good = net.state_dict()
    before = net.head.weight.numpy().copy()

    bad = OrderedDict(good)
    del bad["blocks.0.bn.running_var"]
    bad["extra.weight"] = np.zeros(3)
    bad["head.weight"] = np.zeros((9, 9), np.float32)
    with pytest.raises(ValueError) as err:
        net.load_state_dict(bad)
    msg = str(err.value)
    assert "1 missing key: blocks.0.bn.running_var" in msg
    assert "1 unexpected key: extra.weight" in msg
    assert "1 shape mismatch: head.weight (saved (9, 9), here (3, 4))" in msg
    np.testing.assert_array_equal(net.head.weight.numpy(), before)

    bad = OrderedDict(good)
    del bad["scale"]
    bad["other"] = np.zeros(1)
    missing, unexpected = net.load_state_dict(bad, strict=False)
    assert missing == ["scale"] and unexpected == ["other"]


def test_train_eval_propagate_and_change_batch_norm():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())

    bn = nn.BatchNorm2d(3, momentum=0.5)
    x = md.tensor(np.random.default_rng(0).standard_normal((4, 3, 2, 2)) * 3 + 1, dtype=np.float32)
    y_train = bn(x).numpy()
    assert int(bn.num_batches_tracked.data) == 1
    x64 = x.numpy().astype(np.float64)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.5 * x64.mean(axis=(0, 2, 3)), rtol=1e-5)
    bn.eval()
    y_eval = bn(x).numpy()
    assert int(bn.num_batches_tracked.data) == 1  # eval leaves the statistics alone
    rm, rv = bn.running_mean.numpy(), bn.running_var.numpy()
    ref = (x64 - rm.reshape(1, 3, 1, 1)) / np.sqrt(rv.reshape(1, 3, 1, 1) + 1e-5)
    np.testing.assert_allclose(y_eval, ref, rtol=1e-5, atol=1e-5)
    assert not np.allclose(y_train, y_eval, atol=1e-2)


def test_batch_norm_variants():
    x = md.tensor(np.random.default_rng(0).standard_normal((5, 2, 3, 3)), dtype=np.float32)
    # momentum=None: the running mean is the plain average of the batch means.
    bn = nn.BatchNorm2d(2, momentum=None)
    batches = [x * (i + 1) for i in range(3)]
    for b in batches:
        bn(b)
    mean = np.mean([b.numpy().mean(axis=(0, 2, 3)) for b in batches], axis=0)
    np.testing.assert_allclose(bn.running_mean.numpy(), mean, rtol=1e-5, atol=1e-6)
    # Without running statistics: batch statistics in eval mode too, and no buffers saved.
    bn = nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()
    assert list(bn.state_dict()) == [] and list(bn.parameters()) == []
    y = bn(x).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    with pytest.raises(ValueError, match="expected 4D input \\(got 2D input\\)"):
        nn.BatchNorm2d(2)(md.tensor(np.zeros((3, 2), np.float32)))
    y = nn.BatchNorm1d(2)(md.tensor(np.random.default_rng(1).standard_normal((6, 2))))
    np.testing.assert_allclose(y.numpy().mean(axis=0), 0, atol=1e-6)


@pytest.mark.parametrize(
    "make,fan_in",
    [
        (lambda rng: nn.Conv2d(6, 40, 3, rng=rng), 6 * 9),
        (lambda rng: nn.Conv2d(6, 42, (1, 5), groups=3, rng=rng), 2 * 5),
        (lambda rng: nn.Linear(30, 50, rng=rng), 30),
    ],
)
def test_default_initialisation_bounds(make, fan_in):
    layer = make(np.random.default_rng(0))
    bound = 1 / math.sqrt(fan_in)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.95 * bound  # uniform over the whole interval...
    assert abs(w.mean()) < 0.1 * bound  # ...and centred
    assert np.std(w) == pytest.approx(bound / math.sqrt(3), rel=0.1)  # std of U(-a, a)
    bn = nn.BatchNorm2d(5)
    np.testing.assert_array_equal(bn.weight.numpy(), np.ones(5))
    np.testing.assert_array_equal(bn.bias.numpy(), np.zeros(5))
    np.testing.assert_array_equal(bn.running_var.numpy(), np.ones(5))


def test_initialisation_is_deterministic_by_seed():
    md.manual_seed(7)
    a = Net().state_dict()
    md.manual_seed(7)
    b = Net().state_dict()
    md.manual_seed(8)
    c = Net().state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["head.weight"], c["head.weight"])
    # A layer's own rng gives the same weights whatever the global generator did.
    md.manual_seed(1)
    w1 = nn.Linear(4, 4, rng=np.random.default_rng(5)).weight.numpy()
    md.manual_seed(2)
    w2 = nn.Linear(4, 4, rng=np.random.default_rng(5)).weight.numpy()
    np.testing.assert_array_equal(w1, w2)
    assert nn.manual_seed is md.manual_seed


def test_count_parameters():
    assert nn.count_parameters(nn.Conv2d(3, 8, 3)) == 8 * 3 * 9 + 8
    assert nn.count_parameters(nn.Conv2d(8, 8, 5, groups=8, bias=False)) == 8 * 25
    assert nn.count_parameters(nn.Linear(10, 5, bias=False)) == 50
    assert nn.count_parameters(nn.BatchNorm2d(4)) == 8
    assert nn.count_parameters(nn.BatchNorm2d(4, affine=False)) == 0
    net = Net()
    expected = 1 + (4 * 9 + 4) + 2 * (4 * 4 * 9 + 8) + (4 * 3 + 3)
    assert nn.count_parameters(net) == net.num_parameters() == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kernel_size=0), "kernel_size must be >= 1, got 0"),
        (dict(kernel_size=-1), "kernel_size must be >= 1, got -1"),
        (dict(stride=-1), "stride must be >= 1, got -1"),
        (dict(padding=(0, -2)), r"padding must be >= 0, got \(0, -2\)"),
        (dict(dilation=0), "dilation must be >= 1, got 0"),
    ],
)
def test_conv2d_module_refuses_a_bad_geometry_when_built(kwargs, message):
    with pytest.raises(ValueError, match=f"Conv2d: {message}"):
        nn.Conv2d(3, 4, **{"kernel_size": 3, **kwargs})


def test_layers_compute_what_they_say():
    rng = np.random.default_rng(3)
    x = md.tensor(rng.standard_normal((2, 4, 6, 6)), dtype=np.float32)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, dilation=1, groups=2)
    ref = F.conv2d(x, conv.weight, conv.bias, stride=2, padding=1, groups=2)
    np.testing.assert_array_equal(conv(x).numpy(), ref.numpy())
    lin = nn.Linear(4, 3)
    v = md.tensor(rng.standard_normal((5, 4)), dtype=np.float32)
    expected = v.numpy() @ lin.weight.numpy().T + lin.bias.numpy()
    np.testing.assert_allclose(lin(v).numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(nn.ReLU()(v).numpy(), np.maximum(v.numpy(), 0))
    assert nn.Identity(3, k=1)(v) is v
    np.testing.assert_array_equal(
        nn.MaxPool2d(3, 2, 1)(x).numpy(), F.max_pool2d(x, 3, 2, 1).numpy()
    )
    np.testing.assert_array_equal(
        nn.AvgPool2d(3, 1, 1, count_include_pad=False)(x).numpy(),
        F.avg_pool2d(x, 3, 1, 1, count_include_pad=False).numpy(),
    )
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (2, 4, 1, 1)
    assert nn.Flatten()(x).shape == (2, 144)


def test_gradients_reach_every_parameter_and_zero_grad_clears_them():
    net = Net()
    x = md.tensor(np.random.default_rng(0).standard_normal((3, 1, 5, 5)), dtype=np.float32)
    net(x).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.shape == p.shape, name
        assert p.grad.dtype == np.float32
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_sequential():
    rng = np.random.default_rng(0)
    l1, l2 = nn.Linear(3, 4), nn.Linear(4, 2)
    seq = nn.Sequential(l1, nn.ReLU(), l2)
    x = md.tensor(rng.standard_normal((5, 3)), dtype=np.float32)
    np.testing.assert_array_equal(seq(x).numpy(), l2(F.relu(l1(x))).numpy())
    assert len(seq) == 3 and seq[0] is l1 and seq[-1] is l2 and list(seq)[1] is seq[1]
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    head = seq[:2]
    assert isinstance(head, nn.Sequential) and len(head) == 2 and head[0] is l1
    named = nn.Sequential(OrderedDict([("fc", l1), ("act", nn.ReLU())]))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    seq.append(nn.Identity())
    assert len(seq) == 4


def test_module_list():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layers.append(nn.Linear(2, 3)).extend([nn.ReLU()])
    assert len(layers) == 4 and isinstance(layers[3], nn.ReLU)
    assert [n for n, _ in layers.named_parameters()][-2:] == ["2.weight", "2.bias"]
    new = nn.Linear(2, 2)
    layers[0] = new
    assert layers[0] is new and [n for n, _ in layers.named_children()][0] == "0"
    assert isinstance(layers[1:3], nn.ModuleList) and len(layers[1:3]) == 2
    assert [type(m).__name__ for m in layers] == ["Linear", "Linear", "Linear", "ReLU"]
    with pytest.raises(NotImplementedError, match="iterate"):
        layers(md.tensor([1.0]))


def test_to_device_keeps_parameter_objects(device):
    net = Net()
    params = list(net.parameters())
    assert net.to(device) is net
    assert all(a is b for a, b in zip(params, net.parameters()))
    assert all(t.device == device for t in list(net.parameters()) + list(net.buffers()))
    x = md.tensor(np.random.default_rng(0).standard_normal((2, 1, 5, 5)), dtype="float32")
    y = net(x.to(device))
    assert y.device == device and y.shape == (2, 3)
