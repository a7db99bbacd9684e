"""Knowledge distillation into a smaller student (every family: the parts come from families.py).

The student copies evenly spaced teacher layers (the last one included) or an explicit list, optionally
at a narrower hidden width (sliced from the teacher's weights, or random), and is trained with

    L = alpha * CE(y, student) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
        [+ hidden_mse * MSE(student hidden states, teacher hidden states of the copied layers)]
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..artifacts import CompressedModel
from ..families import family
from ..specs import DistillSpec, SpecError
from ..training import TrainSettings, train


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
                 alpha: float, temperature: float) -> torch.Tensor:
    """alpha * CE + (1 - alpha) * T^2 * KL(p_teacher || q_student), both softened by T.

    Example: equal logits give a KL term of 0, so the loss is alpha * CE.
    """
    ce = F.cross_entropy(student_logits, labels)
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.log_softmax(teacher_logits / t, dim=-1),
                  reduction="batchmean", log_target=True)
    return alpha * ce + (1 - alpha) * t * t * kl


def hidden_mse(student_states, teacher_states, mask: torch.Tensor, layer_map: list[int] | None = None) -> torch.Tensor:
    """Mean squared difference between a student's and its teacher's hidden states, over real tokens.

    ``*_states`` are a model's ``hidden_states`` (the embeddings first, then one per layer). Student layer j
    is compared with teacher layer ``layer_map[j]`` (the same layer when None and the depths agree) and
    the last with the last, the state the classifier reads; a student of another depth without a map is
    compared on the last state only.

    Example: a student equal to its teacher gives 0.
    """
    s_layers, t_layers = len(student_states) - 1, len(teacher_states) - 1
    if layer_map is None:
        layer_map = list(range(s_layers)) if s_layers == t_layers else []
    pairs = [(student_states[j + 1], teacher_states[i + 1]) for j, i in enumerate(layer_map[:s_layers - 1])]
    pairs.append((student_states[-1], teacher_states[-1]))
    total = 0.0
    for s, t in pairs:
        if s.shape != t.shape:
            raise SpecError(f"recover_hidden compares hidden states of the original's width {t.shape[-1]}; "
                            f"this model's are {s.shape[-1]} wide: set recover_hidden=0")
        sq = (s - t).pow(2).mean(-1)
        if sq.shape == mask.shape:  # padding left out
            total = total + (sq * mask).sum() / mask.sum().clamp(min=1)
        else:
            total = total + sq.mean()
    return total / len(pairs)


def teacher_loss(teacher: torch.nn.Module, alpha: float, temperature: float, hidden: float = 0.0,
                 layer_map: list[int] | None = None):
    """The training loop's loss for distillation-aware recovery: ``distill_loss`` against ``teacher``'s
    answers to the same batch (the teacher is the model before pruning, and is never trained), plus
    ``hidden`` x ``hidden_mse`` to its hidden states (``layer_map``: the teacher layer each layer copies).

    Example: ``train(model, ..., loss_fn=teacher_loss(original, alpha=0.5, temperature=2.0))``.
    """
    teacher.eval()
    states = bool(hidden)

    def loss(model, batch, labels):
        with torch.no_grad():
            t = teacher(**batch, output_hidden_states=states) if states else teacher(**batch)
        s = model(**batch, output_hidden_states=states) if states else model(**batch)
        out = distill_loss(s.logits, t.logits, labels, alpha, temperature)
        if states:
            mask = batch["attention_mask"].to(s.hidden_states[-1].dtype)
            out = out + hidden * hidden_mse(s.hidden_states, t.hidden_states, mask, layer_map)
        return out

    return loss


def spaced_layers(n_teacher: int, k: int) -> list[int]:
    """k evenly spaced teacher layers ending with the last: 6 layers, k=3 -> [1, 3, 5]."""
    return [round((i + 1) * n_teacher / k) - 1 for i in range(k)]


def _narrow(model: torch.nn.Module, width: int, init: str) -> torch.nn.Module:
    """A copy of ``model`` with hidden width ``width``: the first ``width`` hidden units and, inside
    attention, the first ``width / heads`` dimensions of every head (or random weights)."""
    from transformers import AutoModelForSequenceClassification

    fam = family(model)
    fam.linears(model)  # Conv1D -> Linear, so the student (built as Linear below) has the same layout
    h, heads, kv = fam.hidden(model), fam.heads(model), fam.kv_heads(model)
    if width >= h:
        raise SpecError(f"distill.width={width} must be smaller than the teacher's width {h}")
    if width % heads:
        raise SpecError(f"distill.width={width} must be divisible by the {heads} attention heads")
    cfg = copy.deepcopy(model.config)
    fam.narrow_config(cfg, width)
    student = AutoModelForSequenceClassification.from_config(cfg)
    fam.linears(student)
    if init == "random":
        return student
    hd, nd = fam.head_dim(model), width // heads

    def per_head(n):  # the first nd dimensions of each of n heads
        return torch.cat([torch.arange(i * hd, i * hd + nd) for i in range(n)])

    q, kvi = per_head(heads), per_head(kv)
    att = fam.head_rows(fam.blocks(model)[0], model, q, kvi)  # rows of the projections (the output's columns: q)
    rows_cols = {f"{p}.weight": (i, None) for p, i in att.items()}
    rows_cols.update({f"{p}.bias": (i, None) for p, i in att.items()})
    rows_cols[f"{fam.o}.weight"] = (None, q)
    src = model.state_dict()
    out = {}
    for name, t in student.state_dict().items():
        w = src[name]
        key = next((k for k in rows_cols if name.endswith("." + k)), None)
        if key is not None and name.startswith(fam.blocks_at):
            r, c = rows_cols[key]
            w = w[r] if r is not None else w
            w = w[:, c] if c is not None else w
        for axis in range(w.ndim):  # every other axis of the teacher's width keeps its first units
            if w.shape[axis] != t.shape[axis] and w.shape[axis] == h:
                w = w.narrow(axis, 0, width)
        out[name] = w.clone()
    student.load_state_dict(out)
    return student


def distill(model: torch.nn.Module, spec: DistillSpec, workload) -> CompressedModel:
    teacher = workload.teacher if workload.teacher is not None else copy.deepcopy(model)
    teacher.eval()
    fam = family(model)
    n = fam.num_layers(model)
    if spec.student_layers >= n:
        raise SpecError(f"distill.student_layers={spec.student_layers} must be fewer than the teacher's {n} layers")
    if fam.shared and spec.layer_map:
        raise SpecError(f"distill.layer_map: {fam.name} shares one layer's weights across depth; "
                        "the student runs that layer fewer times")
    ids = [int(x) for x in spec.layer_map.split(",")] if spec.layer_map else spaced_layers(n, spec.student_layers)
    if fam.shared:
        ids = list(range(spec.student_layers))
    if max(ids) >= n:
        raise SpecError(f"distill.layer_map={spec.layer_map!r} names a layer the {n}-layer teacher lacks")
    student = model
    fam.set_blocks(student, ids)
    if spec.width:
        if spec.hidden_mse:
            raise SpecError("distill.hidden_mse needs the teacher's width (width=0): the hidden states differ in size")
        student = _narrow(student, spec.width, spec.width_init)

    def loss_fn(m, batch, labels):
        with torch.no_grad():
            t_out = teacher(**batch, output_hidden_states=bool(spec.hidden_mse))
        s_out = m(**batch, output_hidden_states=bool(spec.hidden_mse))
        loss = distill_loss(s_out.logits, t_out.logits, labels, spec.alpha, spec.temperature)
        if spec.hidden_mse:
            # hidden_states[0] is the embeddings; student layer j copies teacher layer ids[j]
            pairs = [(s_out.hidden_states[j + 1], t_out.hidden_states[i + 1]) for j, i in enumerate(ids)]
            loss = loss + spec.hidden_mse * sum(F.mse_loss(s, t) for s, t in pairs) / len(pairs)
        return loss

    log = train(student, workload.tokenizer, workload.train["text"].tolist(), workload.train["label"].tolist(),
                TrainSettings(steps=spec.steps, lr=1e-4, seed=workload.seed, max_len=workload.seq_len),
                loss_fn=loss_fn, progress=lambda f, m: workload.progress(0.02 + 0.75 * f, m), cancel=workload.cancel)
    student.eval()
    cm = CompressedModel.fp32(student)
    width = f", width {spec.width}" if spec.width else ""
    cm.notes.append(f"kept {len(ids)} of {n} layers (teacher layers {ids}){width}; trained {spec.steps} steps "
                    f"on labels and the teacher's answers (alpha {spec.alpha}, T {spec.temperature})")
    cm.info.update(student_layers=ids, width=spec.width or fam.hidden(model), train_seconds=log["seconds"])
    return cm
