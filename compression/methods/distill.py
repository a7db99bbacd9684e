"""Knowledge distillation into a smaller student (BERT-style encoders).

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
from ..specs import DistillSpec, SpecError
from ..training import TrainSettings, train
from .structured import encoder_layers


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


def spaced_layers(n_teacher: int, k: int) -> list[int]:
    """k evenly spaced teacher layers ending with the last: 6 layers, k=3 -> [1, 3, 5]."""
    return [round((i + 1) * n_teacher / k) - 1 for i in range(k)]


def _narrow(model: torch.nn.Module, width: int, init: str) -> torch.nn.Module:
    """A copy of ``model`` with hidden width ``width``: the first ``width`` hidden units and, inside
    attention, the first ``width / heads`` dimensions of every head (or random weights)."""
    from transformers import AutoModelForSequenceClassification

    cfg = copy.deepcopy(model.config)
    h, heads = cfg.hidden_size, cfg.num_attention_heads
    if width >= h:
        raise SpecError(f"distill.width={width} must be smaller than the teacher's width {h}")
    if width % heads:
        raise SpecError(f"distill.width={width} must be divisible by the {heads} attention heads")
    cfg.hidden_size = width
    student = AutoModelForSequenceClassification.from_config(cfg)
    if init == "random":
        return student
    hd, nd = h // heads, width // heads
    hid = torch.arange(width)
    att = torch.cat([torch.arange(i * hd, i * hd + nd) for i in range(heads)])
    rows_cols = {  # parameter suffix -> (row index, column index) into the teacher's tensor
        "attention.self.query.weight": (att, hid), "attention.self.key.weight": (att, hid),
        "attention.self.value.weight": (att, hid), "attention.self.query.bias": (att, None),
        "attention.self.key.bias": (att, None), "attention.self.value.bias": (att, None),
        "attention.output.dense.weight": (hid, att), "intermediate.dense.weight": (None, hid),
        "output.dense.weight": (hid, None), "pooler.dense.weight": (hid, hid),
        "classifier.weight": (None, hid),
    }
    src = model.state_dict()
    out = {}
    for name, t in student.state_dict().items():
        w = src[name]
        key = next((k for k in rows_cols if name.endswith(k)), None)
        if key is not None:
            r, c = rows_cols[key]
            w = w[r] if r is not None else w
            w = w[:, c] if c is not None else w
        elif w.shape != t.shape:  # embeddings, LayerNorms, biases on the hidden axis
            w = w[..., :width] if w.ndim >= 1 and w.shape[-1] == h else w[:width]
        out[name] = w.clone()
    student.load_state_dict(out)
    return student


def distill(model: torch.nn.Module, spec: DistillSpec, workload) -> CompressedModel:
    teacher = workload.teacher if workload.teacher is not None else copy.deepcopy(model)
    teacher.eval()
    n = len(encoder_layers(model))
    if spec.student_layers >= n:
        raise SpecError(f"distill.student_layers={spec.student_layers} must be fewer than the teacher's {n} layers")
    ids = [int(x) for x in spec.layer_map.split(",")] if spec.layer_map else spaced_layers(n, spec.student_layers)
    if max(ids) >= n:
        raise SpecError(f"distill.layer_map={spec.layer_map!r} names a layer the {n}-layer teacher lacks")
    student = model
    student.base_model.encoder.layer = torch.nn.ModuleList([encoder_layers(model)[i] for i in ids])
    student.config.num_hidden_layers = len(ids)
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
    cm.info.update(student_layers=ids, width=spec.width or model.config.hidden_size, train_seconds=log["seconds"])
    return cm
