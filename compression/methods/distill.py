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


def teacher_loss(teacher: torch.nn.Module, alpha: float, temperature: float):
    """The training loop's loss for distillation-aware recovery: ``distill_loss`` against ``teacher``'s
    answers to the same batch (the teacher is the model before pruning, and is never trained).

    Example: ``train(model, ..., loss_fn=teacher_loss(original, alpha=0.5, temperature=2.0))``.
    """
    teacher.eval()

    def loss(model, batch, labels):
        with torch.no_grad():
            t = teacher(**batch).logits
        return distill_loss(model(**batch).logits, t, labels, alpha, temperature)

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
