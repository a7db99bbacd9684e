"""SmoothQuant-style scale migration on an ONNX graph, before int8 with one scale per activation tensor.

ONNX Runtime's int8 paths (``quant(kernel=ort | ort-fused | ort-static)``) quantize each activation tensor
with one scale. A transformer's hidden states carry a few input channels tens of times larger than the rest,
so that one scale rounds every other channel coarsely. Smoothing (Xiao et al., 2023, "SmoothQuant") divides
input channel ``k`` of each weight MatMul's activation by ``s_k = amax_k^alpha / wmax_k^(1 - alpha)`` and
multiplies row ``k`` of its weight by the same ``s_k``: the fp32 product is unchanged, and the int8 one
shares the range between activations (``amax``: the channel's largest magnitude on 128 train-split
sentences, never the test split) and weights (``wmax``: the largest weight that reads it). ``alpha = 0``
changes nothing; larger values move more of the outliers into the weights, which have a scale per output
channel and so absorb them better.

Where the division can be folded into the op that makes the activation, it costs nothing: the attention
output projection's input is ``softmax(QK^T) V``, so on the fused graph its ``1/s`` goes into V's columns of
the Attention op's packed weights and bias; in a pre-LN block (GPT-2, Llama, Qwen2) the norm before Q/K/V and
before the feed-forward layer takes it in its gain and bias. Elsewhere (in a post-LN BERT the inputs of Q/K/V
and of the feed-forward layers, whose norms also feed the residual path; the GELU's output) a per-channel Mul is
inserted before the MatMul, only where a channel stands out (``MIN_OUTLIER_RATIO``); ONNX Runtime quantizes that
Mul's output. Nothing else in the graph changes, so this works on any
family's export.

Example::

    >>> info = smooth_graph(Path("fp32-fused.onnx"), Path("smoothed.onnx"), 0.8, workload)
    >>> info        # {'alpha': 0.8, 'smoothed': 18, 'folded': 6, 'muls': 12}
"""
from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

# below this a channel's statistic counts as zero: it keeps s = 1 (nothing to migrate)
TINY = 1e-8
# An input that needs a Mul is smoothed only when its largest channel reaches this many times its median one.
# On the default's validation split (fused int8, alpha 0.8, two fine-tunes) 6 halved the Muls (20 -> 10-11) and
# kept most of the gain: KL to fp32 0.68e-3 on both, against 0.59 and 0.66e-3 smoothing all and 2.02 and 2.16e-3
# none; 10 kept 7 Muls and lost more (0.81e-3).
MIN_OUTLIER_RATIO = 6.0
# s stays within this factor of 1 either way: a channel idle in calibration but not in use must not blow up
S_RANGE = 1e4


def _weight_consumers(graph, init) -> dict[str, list]:
    """Activation tensor -> the weight MatMuls (and fused Attention ops) that read it as their first input, with
    a float 2-D weight initializer that nothing else reads (a tied or shared weight is left alone)."""
    import onnx

    uses = Counter(x for n in graph.node for x in n.input)
    groups: dict[str, list] = defaultdict(list)
    for n in graph.node:
        if not (n.op_type == "MatMul" or (n.op_type == "Attention" and n.domain == "com.microsoft")):
            continue
        if len(n.input) < 2 or n.input[0] in init:
            continue
        w = init.get(n.input[1])
        if w is None or len(w.dims) != 2 or w.data_type != onnx.TensorProto.FLOAT or uses[n.input[1]] != 1:
            continue
        groups[n.input[0]].append(n)
    return groups


def _activation_amax(model, names: list[str], workload) -> tuple[dict[str, np.ndarray], int]:
    """Per-channel max |x| of each named tensor over the train-split calibration sentences, read by running the
    fp32 graph with those tensors made outputs; and how many sentences."""
    import onnx
    import onnxruntime as ort

    from .ort_graph import _Calibration

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    have = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(a, onnx.TensorProto.FLOAT, None)
                              for a in names if a not in have)
    path = Path(workload.scratch) / "smooth-probe.onnx"
    big = probe.ByteSize() > 1_500_000_000  # protobuf's 2 GiB limit: keep large weights beside the graph
    onnx.save(probe, str(path), save_as_external_data=big, location=path.name + ".data" if big else None)
    del probe
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed_names = [i.name for i in sess.get_inputs()]
    amax: dict[str, np.ndarray] = {}
    rows = 0
    for batch in _Calibration(workload, feed_names).batches:
        rows += len(next(iter(batch.values())))
        outs = sess.run(names, batch)
        for a, x in zip(names, outs):
            m = np.abs(x).reshape(-1, x.shape[-1]).max(axis=0)
            amax[a] = m if a not in amax else np.maximum(amax[a], m)
    del sess
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".data").unlink(missing_ok=True)
    return amax, rows


def scales(amax: np.ndarray, wmax: np.ndarray, alpha: float) -> np.ndarray:
    """SmoothQuant's per-channel factor, 1 where either statistic is zero, kept within S_RANGE of 1."""
    ok = (amax > TINY) & (wmax > TINY)
    s = np.ones_like(amax, dtype=np.float64)
    s[ok] = amax[ok].astype(np.float64) ** alpha / wmax[ok].astype(np.float64) ** (1.0 - alpha)
    return np.clip(s, 1.0 / S_RANGE, S_RANGE)


def _fold_target(graph, init, uses, producer, act, consumers, k):
    """Where ``1/s`` can go into the op that makes ``act`` at no cost: a list of ``(node, input index, columns)``
    whose initializer to divide by ``s`` (``columns``: a slice of its last axis), and the words for the notes;
    else None. A norm's gain that the export shares between norms (equal tensors are deduplicated: every fresh
    LayerNorm's ones) is copied for this node first.

    - a fused Attention op whose output is ``act``: V's columns (the last ``k`` of ``3k``) of its packed weights
      and bias;
    - a LayerNormalization over the last axis, or a Mul by a per-channel constant (an RMSNorm's gain), whose
      output feeds only these MatMuls, possibly through Reshapes that keep the last axis (``k`` channels before and
      after, so each element keeps its channel): its gain and bias. This is a pre-LN block's norm (GPT-2, Llama,
      Qwen2); in a post-LN BERT the norm's output also feeds the residual path, and a Mul is needed."""
    if uses[act] != len(consumers):
        return None
    p = producer.get(act)
    if p is not None and p.op_type == "Attention" and p.domain == "com.microsoft" and p.output[0] == act:
        if any(a.name == "qkv_hidden_sizes" for a in p.attribute) or len(p.input) < 3:
            return None
        w, b = init.get(p.input[1]), init.get(p.input[2])
        if (w is None or b is None or list(w.dims)[1:] != [3 * k] or list(b.dims) != [3 * k]
                or uses[p.input[1]] != 1 or uses[p.input[2]] != 1):
            return None
        return [(p, 1, slice(2 * k, None)), (p, 2, slice(2 * k, None))], "attention's V weights"
    cur = act
    while p is not None and p.op_type == "Reshape" and p.domain in ("", "ai.onnx") and uses[p.input[0]] == 1:
        cur = p.input[0]
        p = producer.get(cur)
    if p is None or p.output[0] != cur or p.domain not in ("", "ai.onnx"):
        return None
    per_channel = lambda name: name in init and list(init[name].dims) == [k]
    if p.op_type == "LayerNormalization":
        axis = next((a.i for a in p.attribute if a.name == "axis"), -1)
        params = [j for j in (1, 2) if j < len(p.input) and p.input[j]]
        if axis != -1 or not params or not all(per_channel(p.input[j]) for j in params):
            return None
        return [(p, j, slice(None)) for j in params], "a layer norm's gain"
    if p.op_type == "Mul" and len(p.input) == 2:
        const = [j for j in (0, 1) if per_channel(p.input[j])]
        if len(const) == 1 and p.input[1 - const[0]] not in init:
            return [(p, const[0], slice(None))], "a norm's gain"
    return None


def smooth_graph(src: Path, out: Path, alpha: float, workload, min_ratio: float | None = None) -> dict:
    """Write ``src`` with SmoothQuant's scales migrated (see the module docstring) to ``out``; returns what changed.
    ``min_ratio``: smooth an input that needs a Mul only when its outlier ratio reaches it (default
    ``MIN_OUTLIER_RATIO``; 0 smooths every one)."""
    import onnx

    model = onnx.load(str(src))
    info = _smooth(model, alpha, workload, min_ratio)
    _save(model, out)
    return info


def _save(model, out: Path) -> None:
    import onnx

    big = model.ByteSize() > 1_500_000_000  # protobuf's 2 GiB limit: keep large weights beside the graph
    onnx.save(model, str(out), save_as_external_data=big, location=out.name + ".data" if big else None)


def gemm_as_matmul(model) -> int:
    """Rewrite, in place, each Gemm with a constant 2-D weight (alpha = beta = 1, A not transposed) as MatMul
    plus an Add for its bias; returns how many. ONNX Runtime's dynamic int8 quantizes MatMul and not Gemm, and
    the dynamo export makes Gemm of every linear layer applied to a 2-D tensor: the classifier head of every
    encoder, and all of GPT-2's Conv1D layers, which would otherwise stay in fp32."""
    from onnx import helper, numpy_helper

    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    uses = Counter(x for n in graph.node for x in n.input)
    taken = {t for n in graph.node for t in (*n.input, *n.output)} | set(init)
    attr = lambda n, k, d: next((helper.get_attribute_value(a) for a in n.attribute if a.name == k), d)
    nodes, done = [], 0
    for j, n in enumerate(graph.node):
        w = init.get(n.input[1]) if n.op_type == "Gemm" and n.domain in ("", "ai.onnx") else None
        if (w is None or len(w.dims) != 2 or attr(n, "transA", 0) or attr(n, "alpha", 1.0) != 1.0
                or attr(n, "beta", 1.0) != 1.0 or (attr(n, "transB", 0) and uses[n.input[1]] != 1)):
            nodes.append(n)
            continue
        weight = n.input[1]
        if attr(n, "transB", 0):  # MatMul reads [in, out]: store the transposed weight under a new name
            weight = _fresh(w.name + "_t", taken)
            graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(w).T.copy(), weight))
            graph.initializer.remove(w)
        name = n.name or f"gemm_{j}"
        bias = n.input[2] if len(n.input) > 2 and n.input[2] else ""
        if not bias:
            nodes.append(helper.make_node("MatMul", [n.input[0], weight], [n.output[0]], name=name + "_matmul"))
        else:
            mid = _fresh(n.output[0] + "_matmul", taken)
            nodes.append(helper.make_node("MatMul", [n.input[0], weight], [mid], name=name + "_matmul"))
            nodes.append(helper.make_node("Add", [mid, bias], [n.output[0]], name=name + "_bias"))
        done += 1
    if done:
        del graph.node[:]
        graph.node.extend(nodes)
    return done


def outlier_ratio(amax: np.ndarray) -> float:
    """How far an activation's largest channel stands out: its max |x| over the median channel's."""
    med = float(np.median(amax))
    return float(amax.max()) / med if med > TINY else float("inf") if amax.max() > TINY else 1.0


def _fresh(base: str, taken: set) -> str:
    """``base``, with underscores appended until no name in ``taken`` has it; reserved in ``taken``."""
    name = base
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _smooth(model, alpha: float, workload, min_ratio: float | None = None) -> dict:
    """:func:`smooth_graph` on a loaded graph, in place."""
    min_ratio = MIN_OUTLIER_RATIO if min_ratio is None else min_ratio
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    init = {i.name: i for i in graph.initializer}
    groups = _weight_consumers(graph, init)
    info = {"alpha": alpha, "smoothed": 0, "folded": 0, "folded_into": {}, "muls": 0, "skipped": 0}
    if not groups:
        return info
    amax, info["rows"] = _activation_amax(model, list(groups), workload)
    arrays = {}  # initializer name -> its new value

    def value(name):
        if name not in arrays:
            arrays[name] = numpy_helper.to_array(init[name]).astype(np.float32).copy()
        return arrays[name]

    names = {n.name for n in graph.node}
    for j, n in enumerate(graph.node):  # every node named, so that a Mul can be placed before its consumer
        if not n.name:
            n.name = _fresh(f"node_{j}", names)
    uses = Counter(x for n in graph.node for x in n.input)
    producer = {o: n for n in graph.node for o in n.output}
    muls = {}  # first consumer's name -> the Mul to insert before it
    taken = {t for n in graph.node for t in (*n.input, *n.output)} | set(init)
    for i, (act, consumers) in enumerate(groups.items()):
        k = value(consumers[0].input[1]).shape[0]
        if any(value(c.input[1]).shape[0] != k for c in consumers) or amax[act].shape[0] != k:
            continue  # a MatMul that broadcasts differently: leave it
        fold = _fold_target(graph, init, uses, producer, act, consumers, k)
        if fold is None and outlier_ratio(amax[act]) < min_ratio:
            info["skipped"] += 1  # no outlier channels: a Mul here would cost time and buy nothing
            continue
        wmax = np.max([np.abs(value(c.input[1])).max(axis=1) for c in consumers], axis=0)
        s = scales(amax[act], wmax, alpha)
        for c in consumers:
            arrays[c.input[1]] = (value(c.input[1]) * s[:, None]).astype(np.float32)
        if fold is not None:
            targets, where = fold
            for node, j, cols in targets:
                name = node.input[j]
                if uses[name] > 1:  # shared with other nodes: this one gets its own copy
                    copy = _fresh(name + "_smoothed", taken)
                    arrays[copy] = value(name).copy()
                    graph.initializer.append(numpy_helper.from_array(arrays[copy], copy))
                    init[copy] = graph.initializer[-1]
                    uses[name] -= 1
                    uses[copy] = 1
                    node.input[j] = name = copy
                value(name)[..., cols] /= s
            info["folded"] += 1
            info["folded_into"][where] = info["folded_into"].get(where, 0) + 1
        else:
            name = _fresh(f"smooth_{i}_inv", taken)
            smoothed = _fresh(name + "_out", taken)
            graph.initializer.append(numpy_helper.from_array((1.0 / s).astype(np.float32), name))
            muls[consumers[0].name] = onnx.helper.make_node(
                "Mul", [act, name], [smoothed], name=f"SmoothQuant_{i}")
            for c in consumers:
                c.input[0] = smoothed
            info["muls"] += 1
        info["smoothed"] += 1
    for t in graph.initializer:
        if t.name in arrays:
            t.CopyFrom(numpy_helper.from_array(arrays[t.name], t.name))
    if muls:
        nodes = []
        for n in graph.node:
            mul = muls.pop(n.name, None)
            if mul is not None:
                nodes.append(mul)
            nodes.append(n)
        del graph.node[:]
        graph.node.extend(nodes)
    return info


def smooth_note(info: dict) -> str:
    """The notes' words for what :func:`smooth_graph` did."""
    skipped = info.get("skipped", 0)
    left = (f"; {skipped} input{'s' * (skipped != 1)} without outlier channels (largest under "
            f"{MIN_OUTLIER_RATIO:g}x the median) left as they were" if skipped else "")
    if not info.get("smoothed"):
        return ("; smoothing found no weight MatMul to smooth" if not skipped else
                "; smoothing (SmoothQuant) changed nothing" + left)
    how = []
    for where, n in info.get("folded_into", {}).items():
        how.append(f"{n} folded into {where}")
    if info["muls"]:
        how.append(f"{info['muls']} through an inserted per-channel Mul")
    return (f"; activation outliers moved into the weights (SmoothQuant, alpha {info['alpha']:g}) before "
            f"{info['smoothed']} weight inputs, scales from {info['rows']} training sentences: "
            + ", ".join(how) + left)


def int8_source(src: Path, spec, workload) -> tuple[Path, str, dict]:
    """The fp32 graph an ONNX Runtime int8 kernel quantizes: ``src`` with its Gemm ops as MatMul (see
    :func:`gemm_as_matmul`) and, with ``spec.smooth``, SmoothQuant's scales migrated (a copy in the scratch
    folder; ``src`` itself when neither changes anything); the words for its notes, and the info for ``cm.info``."""
    import onnx

    model = onnx.load(str(src))
    gemms = gemm_as_matmul(model)
    alpha = float(getattr(spec, "smooth", 0) or 0)
    if not gemms and not alpha:
        return src, "", {}
    note = (f"; {gemms} Gemm op{'s' * (gemms != 1)} rewritten as MatMul + Add so that the int8 kernel takes "
            f"{'their' if gemms != 1 else 'its'} weights too" if gemms else "")
    info = {"gemm_as_matmul": gemms}
    if alpha:
        info["smooth"] = _smooth(model, alpha, workload)
        note += smooth_note(info["smooth"])
    out = Path(workload.scratch) / (src.stem + ".int8-source.onnx")
    _save(model, out)
    return out, note, info
