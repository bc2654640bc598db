"""Wrong solutions of every classroom task, which grading must fail (tests/test_grade.py).

Teacher-only: `python -m minidarts assign` leaves this file out of the student copy
(assign.TEACHER_ONLY). A mutant is the reference solution of the task (its region in the
package) with one plausible mistake, written as text substitutions (old, new) applied to
the region's body; each must change it. `solve()` writes a reference or mutated
solution into a student copy's markers, as a student would.
"""

from pathlib import Path

from minidarts.classroom import assign

# task -> [(name, [(old, new), ...])]
MUTANTS = {
    "numerical_grad": [
        ("forward difference", [("flat[i] = old - eps", "flat[i] = old"), ("(2 * eps)", "eps")]),
        ("divided by eps, not 2 eps", [("/ (2 * eps)", "/ eps")]),
        ("x left perturbed", [("        flat[i] = old\n", "")]),
        ("difference the wrong way round", [("(f_plus - f_minus)", "(f_minus - f_plus)")]),
    ],
    "backward_mul": [
        (
            "gradients swapped",
            [
                (
                    "unbroadcast(gy * b, a.shape), unbroadcast(gy * a, b.shape)",
                    "unbroadcast(gy * a, a.shape), unbroadcast(gy * b, b.shape)",
                )
            ],
        ),
        ("gy forgotten", [("unbroadcast(gy * b, a.shape)", "unbroadcast(b, a.shape)")]),
        ("broadcasting not undone", [("unbroadcast(gy * a, b.shape)", "gy * a")]),
    ],
    "backward_matmul": [
        (
            "b reshaped, not transposed",
            [
                (
                    "xp.matmul(g2, xp.swapaxes(b2, -1, -2))",
                    "xp.matmul(g2, b2.reshape(xp.swapaxes(b2, -1, -2).shape))",
                )
            ],
        ),
        (
            "a vector on the right not handled",
            [("        if b.ndim == 1:\n            g2 = xp.expand_dims(g2, -1)\n", "")],
        ),
        (
            "broadcast batch: first one kept, not summed",
            [
                (
                    "unbroadcast(gb, b2.shape)",
                    "gb[(0,) * (gb.ndim - b2.ndim)]",
                )
            ],
        ),
    ],
    "backward_softmax": [
        ("sum term missing", [("(gy - (gy * y).sum(axis=self.dim, keepdims=True))", "gy")]),
        ("y missing in the sum", [("(gy * y).sum(axis=self.dim", "gy.sum(axis=self.dim")]),
        (
            "summed over the last axis",
            [("sum(axis=self.dim, keepdims=True)", "sum(axis=-1, keepdims=True)")],
        ),
    ],
    "backward_cross_entropy": [
        ("not divided by N", [("(gy / g.shape[0])", "gy")]),
        ("onehot forgotten", [("        g[self.rows, self.target] -= 1\n", "")]),
        ("gy forgotten", [("g * (gy / g.shape[0])", "g / g.shape[0]")]),
    ],
    "im2col": [
        (
            "stride and dilation swapped",
            [("dh * s_h, dw * s_w, sh * s_h, sw * s_w", "sh * s_h, sw * s_w, dh * s_h, dw * s_w")],
        ),
        ("padding forgotten", [("xpad = _pad_hw(x, ph, pw)", "xpad = _pad_hw(x, 0, 0)")]),
        ("groups read the same channels", [("(s_n, cg * s_c, s_c,", "(s_n, 0, s_c,")]),
        (
            "weight rows transposed",
            [
                (
                    "self.wm = w.reshape(g, o // g, cg * kh * kw)",
                    "self.wm = w.transpose(0, 1, 3, 2).reshape(g, o // g, cg * kh * kw)",
                )
            ],
        ),
    ],
    "mixed_op": [
        ("weight read as a number", [("weights[k] * op(x)", "float(weights[k].data) * op(x)")]),
        ("weights shifted by one", [("weights[k] * op(x)", "weights[k - 1] * op(x)")]),
        ("unweighted sum", [("term = weights[k] * op(x)", "term = op(x)")]),
    ],
    "cell": [
        ("the same weights on every node", [("weights[offset + j]", "weights[j]")]),
        ("no preprocessing", [("[self.preprocess0(s0), self.preprocess1(s1)]", "[s0, s1]")]),
        (
            "each node sees only the two inputs",
            [("for j, h in enumerate(states):", "for j, h in enumerate(states[:2]):")],
        ),
    ],
    "bilevel_step": [
        ("zero_grad missing", [("            self.optimizer.zero_grad()\n", "")]),
        ("lambda not passed on", [("self.loss(x_val, y_val, lam)", "self.loss(x_val, y_val)")]),
        (
            "hypernetwork and penalty ignored",
            [
                (
                    "loss, logits = self.loss(x_val, y_val, lam)",
                    "logits = self.model(x_val, self.model.alphas)\n"
                    "                loss = F.cross_entropy(logits, y_val)",
                )
            ],
        ),
        ("weights not frozen", [("with frozen(self.model.parameters()):", "if True:")]),
    ],
    "hypernet": [
        ("input map ignored", [("t = self.input(lam)", "t = float(lam)")]),
        ("b1 and b2 swapped", [("self.b1[k] * t + self.b2[k]", "self.b2[k] * t + self.b1[k]")]),
        (
            "one kind for both",
            [("self.b1[k] * t + self.b2[k]", "self.b1['reduce'] * t + self.b2['reduce']")],
        ),
    ],
    "complexity": [
        ("raw alpha, not relaxed", [("relax(alpha, self.relaxation)", "alpha")]),
        (
            "a cell type the network lacks counted",
            [("            if kind not in self.kinds:\n                continue\n", "")],
        ),
        (
            "softmax whatever the relaxation",
            [("relax(alpha, self.relaxation)", "relax(alpha, 'softmax')")],
        ),
    ],
    "genotype": [
        ("'none' allowed", [('if name != "none"]', "]")]),
        ("ties to the higher index", [("(r[o], -o)", "(r[o], o)")]),
        (
            "edge strength counts 'none'",
            [("edges[i][best_op[i]] for i", "max(edges[i]) for i")],
        ),
        ("edges of the wrong node", [("start += n_inputs", "start += 2")]),
    ],
}


def reference_body(task):
    """The code of the package's solution region of `task` (one region per task): its
    lines but the `# HINT:` lines under the BEGIN line, which a student need not copy."""
    ((file, line),) = assign.package_regions()[task]
    lines = (assign.REPO / "minidarts" / file).read_text().splitlines(keepends=True)
    end = next(i for i in range(line, len(lines)) if assign.END.match(lines[i]))
    hints = len(assign.region_hints(lines, line - 1))
    return "".join(lines[line + hints : end])


def mutate(task, changes):
    """The reference body of `task` with each (old, new) substitution made once."""
    body = reference_body(task)
    for old, new in changes:
        assert body.count(old) == 1, f"{task}: {old!r} is not in the reference solution once"
        body = body.replace(old, new)
    return body


def solve(copy, task, body=None):
    """Write `body` (default: the reference solution) between the markers of `task` in
    the student copy at `copy`, as a student would."""
    body = reference_body(task) if body is None else body
    ((file, _),) = assign.package_regions()[task]
    path = Path(copy) / "minidarts" / file
    lines = path.read_text().splitlines(keepends=True)
    ((_, begin, end),) = [r for r in assign.find_student_regions("".join(lines)) if r[0] == task]
    lines[begin + 1 : end] = [body]
    path.write_text("".join(lines))
