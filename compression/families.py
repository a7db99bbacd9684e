"""Model families: the only code that knows where a family keeps its parts.

A :class:`Family` names, relative to the model or to one block, where the blocks, attention projections,
feed-forward layers, norms and classifier live, and which quirks the methods must respect (fused q/k/v,
a fused gated FFN, one layer shared across depth, grouped key/value heads, a decoder's last-token head).
Head count, hidden size and layer count come from optimum's ``NormalizedConfigManager``.

Example::

    >>> fam = family(model)                 # raises UserError naming the family and the supported ones
    >>> fam.name, len(fam.blocks(model)), fam.heads(model)
    ('distilbert', 6, 12)
"""
from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING

from .config import UserError

if TYPE_CHECKING:  # torch is imported where a model is touched: the app asks for refusals without it
    import torch


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    blocks_at: str  # dotted path from the model to the ModuleList of blocks
    q: str  # paths inside a block; for fused projections q, k and v name the same module
    k: str
    v: str
    o: str
    ffn_in: tuple[str, ...]  # one Linear, or gate and up of a gated FFN
    ffn_out: str
    norms: tuple[str, ...]
    head: tuple[str, ...]  # patterns over module names: the classifier (and pooler) that methods leave alone
    fused_qkv: bool = False  # one Linear whose rows are [q | k | v]
    fused_glu: bool = False  # one Linear whose rows are [input | gate]
    shared: bool = False  # one block applied num_layers times (ALBERT)
    decoder: bool = False  # classifies on the last non-padding token; needs config.pad_token_id
    pos_proj: tuple[str, ...] = ()  # DeBERTa's own position projections (query side, key side), when not shared
    head_bias: str = ""  # an Embedding(buckets, heads) shared by every block (MPNet): heads go in every block

    # ---------------------------------------------------------------- config, through optimum
    def _norm(self, model):
        from optimum.utils import NormalizedConfigManager

        return NormalizedConfigManager.get_normalized_config_class(model.config.model_type)(model.config)

    def heads(self, model) -> int:
        return int(self._norm(model).num_attention_heads)

    def kv_heads(self, model) -> int:
        return int(getattr(model.config, "num_key_value_heads", None) or self.heads(model))

    def hidden(self, model) -> int:
        return int(self._norm(model).hidden_size)

    def num_layers(self, model) -> int:
        return int(self._norm(model).num_layers)

    def set_config(self, config, **values) -> None:
        """Write ``num_layers`` / ``hidden_size`` / ``num_attention_heads`` under the family's own names."""
        from optimum.utils import NormalizedConfigManager

        norm = NormalizedConfigManager.get_normalized_config_class(config.model_type)(config)
        for key, v in values.items():
            setattr(config, getattr(norm, key.upper()), v)

    def narrow_config(self, config, width: int) -> None:
        """Set a copy of the teacher's config to hidden width ``width``, with every other size that follows it.

        Example: ELECTRA with embedding_size == hidden_size keeps them equal, so the student (like the teacher)
        has no embeddings_project; DeBERTa's pooler_hidden_size follows too.
        """
        from optimum.utils import NormalizedConfigManager

        norm = NormalizedConfigManager.get_normalized_config_class(config.model_type)(config)
        h, heads = int(norm.hidden_size), int(norm.num_attention_heads)
        self.set_config(config, hidden_size=width)
        for attr in ("pooler_hidden_size", "embedding_size"):  # own copies of the width, when they equal it
            if getattr(config, attr, None) == h:
                setattr(config, attr, width)
        if getattr(config, "head_dim", None):
            config.head_dim = width // heads

    def head_dim(self, model) -> int:
        return int(getattr(model.config, "head_dim", None) or self.hidden(model) // self.heads(model))

    # ---------------------------------------------------------------- parts
    def blocks(self, model) -> torch.nn.ModuleList:
        return model.get_submodule(self.blocks_at)

    def set_blocks(self, model, keep: list[int]) -> None:
        """Keep blocks ``keep`` (in that order); a shared-layer family keeps that many applications."""
        if not self.shared:
            parent, _, attr = self.blocks_at.rpartition(".")
            old = self.blocks(model)
            setattr(model.get_submodule(parent), attr, type(old)([old[i] for i in keep]))
            for i, b in enumerate(self.blocks(model)):  # decoders index their cache by layer_idx
                for m in b.modules():
                    if hasattr(m, "layer_idx"):
                        m.layer_idx = i
        self.set_config(model.config, num_layers=len(keep))
        if hasattr(model.config, "layer_types") and model.config.layer_types is not None:
            model.config.layer_types = [model.config.layer_types[i] for i in keep]

    def head_rows(self, block, model, q_idx: torch.Tensor, kv_idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Which output rows of which projection belong to the kept heads (q rows ``q_idx``, k/v rows ``kv_idx``)."""
        import torch

        if self.fused_qkv:  # rows are [q | k | v], each heads * head_dim long
            w = self.heads(model) * self.head_dim(model)
            return {self.q: torch.cat([q_idx, kv_idx + w, kv_idx + 2 * w])}
        rows = {self.q: q_idx, self.k: kv_idx, self.v: kv_idx}
        for path, idx in zip(self.pos_proj, (q_idx, kv_idx)):
            try:
                block.get_submodule(path)
                rows[path] = idx
            except AttributeError:
                pass
        return rows

    def part(self, block, path: str) -> torch.nn.Module:
        return block.get_submodule(path)

    def set_part(self, block, path: str, module: torch.nn.Module) -> None:
        parent, _, attr = path.rpartition(".")
        setattr(block.get_submodule(parent) if parent else block, attr, module)

    def linears(self, model, where: str = "blocks") -> list[tuple[str, torch.nn.Module]]:
        """Named Linear layers: ``blocks`` (inside the blocks: safe to compress) or ``body`` (all but the head).

        GPT-2's Conv1D layers are turned into Linear first (same numbers, the layout every method knows).
        """
        import torch

        to_linear(model)
        prefix = f"{self.blocks_at}.*" if where == "blocks" else "*"
        return [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and fnmatch(n, prefix)
                and not any(fnmatch(n, p) for p in self.head)]

    def input_names(self, model, tokenizer=None) -> list[str]:
        """What the forward pass (and so the ONNX export) takes: the tokenizer's ``model_input_names`` that
        the forward signature accepts; without a tokenizer, token types only where the model has several."""
        params = inspect.signature(model.forward).parameters
        if tokenizer is not None:
            names = list(tokenizer.model_input_names)
        else:
            names = ["input_ids", "attention_mask"]
            if int(getattr(model.config, "type_vocab_size", 0) or 0) > 1:
                names.append("token_type_ids")
        return [n for n in names if n in params]

    def sync(self, model) -> None:
        """Re-derive the attributes a block reads at run time from its (possibly shrunk) layer shapes."""
        hd = self.head_dim(model)
        for b in self.blocks(model):
            q = self.part(b, self.q)
            att = self.part(b, self.q.rpartition(".")[0]) if "." in self.q else b
            out = q.out_features if hasattr(q, "out_features") else q.nf  # nf: a Conv1D's outputs
            width = out // 3 if self.fused_qkv else out
            if hasattr(att, "split_size"):  # GPT-2 splits the fused output by this
                att.split_size = width
            for attr in ("num_attention_heads", "num_heads", "n_heads"):
                if isinstance(getattr(att, attr, None), int):
                    setattr(att, attr, width // hd)
            if isinstance(getattr(att, "all_head_size", None), int):
                att.all_head_size = width


def to_linear(model) -> None:
    """Replace transformers' Conv1D (GPT-2: y = x W + b, W is in x out) by an equal nn.Linear, in place."""
    import torch
    from transformers.pytorch_utils import Conv1D

    for name, m in list(model.named_modules()):
        if isinstance(m, Conv1D):
            lin = torch.nn.Linear(m.weight.shape[0], m.weight.shape[1], dtype=m.weight.dtype)
            with torch.no_grad():
                lin.weight.copy_(m.weight.t())
                lin.bias.copy_(m.bias)
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, attr, lin)


_BERT = dict(q="attention.self.query", k="attention.self.key", v="attention.self.value",
             o="attention.output.dense", ffn_in=("intermediate.dense",), ffn_out="output.dense",
             norms=("attention.output.LayerNorm", "output.LayerNorm"))

FAMILIES: tuple[Family, ...] = (
    Family("bert", ("bert",), "bert.encoder.layer", head=("classifier", "bert.pooler*"), **_BERT),
    Family("roberta", ("roberta", "xlm-roberta", "camembert"), "roberta.encoder.layer",
           head=("classifier*",), **_BERT),
    Family("electra", ("electra",), "electra.encoder.layer", head=("classifier*",), **_BERT),
    Family("distilbert", ("distilbert",), "distilbert.transformer.layer", "attention.q_lin", "attention.k_lin",
           "attention.v_lin", "attention.out_lin", ("ffn.lin1",), "ffn.lin2", ("sa_layer_norm", "output_layer_norm"),
           head=("pre_classifier", "classifier")),
    Family("deberta-v2", ("deberta-v2",), "deberta.encoder.layer", "attention.self.query_proj",
           "attention.self.key_proj", "attention.self.value_proj", "attention.output.dense", ("intermediate.dense",),
           "output.dense", ("attention.output.LayerNorm", "output.LayerNorm"), head=("classifier", "pooler*"),
           pos_proj=("attention.self.pos_query_proj", "attention.self.pos_key_proj")),
    Family("albert", ("albert",), "albert.encoder.albert_layer_groups.0.albert_layers", "attention.query",
           "attention.key", "attention.value", "attention.dense", ("ffn",), "ffn_output",
           ("attention.LayerNorm", "full_layer_layer_norm"), head=("classifier", "albert.pooler"), shared=True),
    Family("mpnet", ("mpnet",), "mpnet.encoder.layer", "attention.attn.q", "attention.attn.k", "attention.attn.v",
           "attention.attn.o", ("intermediate.dense",), "output.dense", ("attention.LayerNorm", "output.LayerNorm"),
           head=("classifier*",), head_bias="mpnet.encoder.relative_attention_bias"),
    Family("modernbert", ("modernbert",), "model.layers", "attn.Wqkv", "attn.Wqkv", "attn.Wqkv", "attn.Wo",
           ("mlp.Wi",), "mlp.Wo", ("attn_norm", "mlp_norm"), head=("head*", "classifier"), fused_qkv=True,
           fused_glu=True),
    Family("gpt2", ("gpt2",), "transformer.h", "attn.c_attn", "attn.c_attn", "attn.c_attn", "attn.c_proj",
           ("mlp.c_fc",), "mlp.c_proj", ("ln_1", "ln_2"), head=("score",), fused_qkv=True, decoder=True),
    Family("llama", ("llama", "qwen2"), "model.layers", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
           "self_attn.o_proj", ("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj",
           ("input_layernorm", "post_attention_layernorm"), head=("score",), decoder=True),
)
BY_TYPE = {t: f for f in FAMILIES for t in f.model_types}
SUPPORTED = tuple(t for f in FAMILIES for t in f.model_types)


def family_of(model_type: str) -> Family:
    """The adapter for a config's ``model_type``; an unknown one is a UserError naming the supported ones.

    Example: ``family_of("xlm-roberta").name`` -> ``"roberta"``.
    """
    try:
        return BY_TYPE[model_type]
    except KeyError:
        raise UserError(f"model family {model_type!r} is not supported (no adapter says where its layers are); "
                        f"supported: {', '.join(SUPPORTED)}") from None


def family(model) -> Family:
    """The adapter for a loaded model, checked: a decoder needs ``config.pad_token_id`` to find its last token.

    Example: ``family(model).linears(model)`` -> the Linear layers inside its blocks.
    """
    fam = family_of(model.config.model_type)
    if fam.decoder and model.config.pad_token_id is None:
        raise UserError(f"{fam.name} classifies on the last non-padding token, so its config needs pad_token_id "
                        "(set it to the tokenizer's pad token id)")
    return fam



# (family, method) -> why that method cannot run on that family. A last resort: each entry is listed in the
# README's methods section, and the test matrix accepts a refusal only where it stands here.
REFUSALS: dict[tuple[str, str], str] = {}


def model_type_at(folder: str | Path | None) -> str | None:
    """The ``model_type`` in a model folder's config.json (read as JSON: no torch), or None."""
    f = Path(folder) / "config.json" if folder else None
    if f is None or not f.is_file():
        return None
    try:
        return json.loads(f.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


def refusal(model_type: str | None, method: str, spec=None) -> str | None:
    """Why ``method`` (with ``spec``'s settings, when given) cannot run on a model of this ``model_type``, as one
    plain sentence; None when it can.

    Example: ``refusal("t5", "heads")`` -> "model family 't5' is not supported ...; supported: bert, ...".
    """
    if model_type is None:  # not known yet (a Hub model before preparation): the job itself will tell
        return None
    if model_type not in BY_TYPE:
        try:
            family_of(model_type)
        except UserError as e:
            return str(e)
    fam = BY_TYPE[model_type]
    if fam.shared and method == "distill" and getattr(spec, "layer_map", ""):
        return (f"distill.layer_map does not apply to {fam.name}: it shares one layer's weights across depth, "
                "so the student runs that layer fewer times (leave layer_map empty)")
    return REFUSALS.get((fam.name, method))
