"""Compression specs: one frozen, validated dataclass per method (recipes.py chains them).

Every field carries its range, unit and one-line help in ``field(metadata=...)``; the CLI flags and
the dashboard's widgets are both built from that metadata, so a catalogued method (registry.py)
needs no extra code to be swept.

Example::

    >>> QuantSpec(bits=4, group_size=64).to_dict()  # doctest: +NORMALIZE_WHITESPACE
    {'method': 'quant', 'bits': 4, 'kernel': 'auto', 'scheme': 'sym', 'group_size': 64, 'embeddings': 'none',
     'unseen': 'same', 'algorithm': 'rtn', 'per_layer': ()}
    >>> PruneSpec(sparsity=0.8, per_layer="5:0.5;4:0.5").per_layer     # keyed by the family adapter's layer index
    ((4, 0.5), (5, 0.5))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .layer_maps import canonical_per_layer, per_layer_words
from .spec_base import SpecError, Spec, knob, per_layer_knob, recovery_knobs  # noqa: F401  (SpecError: re-exported)


@dataclass(frozen=True)
class QuantSpec(Spec):
    method: ClassVar[str] = "quant"
    label: ClassVar[str] = "Quantization"
    explain: ClassVar[str] = "Stores each weight in fewer bits, like rounding prices to the nearest euro."

    bits: int = knob(8, cost=True, lo=2, hi=8, step=1, unit="bits", sweep="2,4,8",
                     help="weight bit-width; 8 runs on a real int8 kernel, 2 and 4 on ONNX Runtime's n-bit "
                          "kernel with kernel=nbits, other widths are simulated here")
    kernel: str = knob("auto", cost=True, choices=("auto", "rtn", "torch", "ort", "ort-fused", "ort-static", "quanto", "nbits",
                                        "openvino"),
                       help="auto = real int8 for plain 8 bits, else rtn; rtn = low-bit weights decoded to fp32 in "
                            "torch (latency simulated); ort-fused = ONNX Runtime int8 on the transformer optimizer's "
                            "fused graph; ort-static = ONNX Runtime int8 with activation scales calibrated on the "
                            "train split (QDQ); nbits = ONNX Runtime's MatMulNBits kernel (2, 4, 8 bits); "
                            "openvino = OpenVINO int8 calibrated by NNCF on the train split (optional install)")
    scheme: str = knob("sym", choices=("sym", "asym"), help="symmetric (zero at 0) or asymmetric (with a zero point)")
    group_size: int = knob(0, lo=0, hi=4096, step=1, unit="weights",
                           help="weights sharing one scale; 0 = one scale per output channel")
    embeddings: str = knob("none", choices=("none", "8", "4"),
                           help="also store the word embeddings in 8 or 4 bits (they are half of a small model)")
    unseen: str = knob("same", choices=("same", "2", "drop"),
                       help="word-embedding rows of tokens that never occur in the train split: stored like the "
                            "others, in 2 bits, or dropped (read back as zeros)")
    algorithm: str = knob("rtn", cost=True, choices=("rtn", "hqq", "gptq"),
                          help="how low-bit weights are chosen: rtn = nearest level; hqq = scales and zero points "
                               "fitted to the weights (kernel=nbits); gptq = rounding errors compensated on 128 "
                               "training sentences")
    act_order: str = knob("off", cost=True, choices=("off", "on"),
                          help="algorithm=gptq only: round the inputs that sway the layer's output most first, "
                               "while the most weights are left to make up for their rounding")
    clip: str = knob("none", cost=True, choices=("none", "mse"),
                     help="mse = shrink each group's range a little where that rounds its weights closer "
                          "(a rare outlier is clipped instead of coarsening the step for all); rtn and gptq")
    smooth: float = knob(0.0, lo=0.0, hi=1.0, step=0.05, unit="",
                         help="SmoothQuant before int8 with one scale per activation tensor: move this share of each "
                              "input channel's range from the activations into the weights (0 = off; 0.5 to 0.8 "
                              "usual); kernel=ort, ort-fused or ort-static")
    per_layer: tuple = per_layer_knob("bit-widths (2..8, or 32 to keep a layer in fp32)")

    def check(self):
        canonical_per_layer(self, "bits", self._layer_bits)
        if self.smooth and self.resolved_kernel not in ("ort", "ort-fused", "ort-static"):
            raise SpecError(f"quant.smooth={self.smooth:g} rescales activations for ONNX Runtime's int8 kernels, "
                            f"which give each activation tensor one scale: use kernel=ort, ort-fused or ort-static "
                            f"(kernel={self.resolved_kernel} "
                            + ("smooths on its own, inside NNCF)" if self.resolved_kernel == "openvino"
                               else "quantizes no activations with one scale)"))
        levels = {b for _, b in self.per_layer}
        if self.group_size and self.group_size & (self.group_size - 1):
            raise SpecError(f"quant.group_size={self.group_size} must be a power of two (or 0 for per-channel)")
        if self.per_layer and self.kernel in ("ort", "ort-fused", "ort-static", "quanto", "nbits", "openvino"):
            raise SpecError(f"quant.kernel={self.kernel} quantizes every layer alike; per-layer bit-widths run on "
                            "kernel=torch (8 or 32 per layer) or rtn")
        if self.kernel == "torch" and levels - {8, 32}:
            raise SpecError("quant.kernel=torch runs 8-bit layers only: give per-layer bits 8 or 32 (fp32), "
                            "or use kernel=rtn")
        if self.kernel in ("torch", "ort", "ort-fused", "ort-static", "quanto", "openvino"):
            if self.bits != 8:
                raise SpecError(f"quant.kernel={self.kernel} runs only 8-bit weights here; "
                                f"use kernel=nbits (2 or 4 bits) or kernel=rtn for bits={self.bits}")
            if self.group_size or self.scheme != "sym":
                raise SpecError(f"quant.kernel={self.kernel} runs symmetric per-channel int8 only; "
                                "use kernel=nbits or kernel=rtn for groups or asymmetric scales")
            if self.algorithm != "rtn":
                raise SpecError(f"quant.algorithm={self.algorithm} needs kernel=nbits or kernel=rtn "
                                f"(kernel={self.kernel} rounds its int8 weights to nearest)")
        if self.kernel == "nbits":
            if self.bits not in (2, 4, 8):
                raise SpecError(f"quant.kernel=nbits runs 2, 4 or 8 bits (ONNX Runtime's MatMulNBits has no "
                                f"{self.bits}-bit kernel); use kernel=rtn for bits={self.bits}, which runs in torch "
                                "with simulated latency (algorithm=gptq calibrates it)")
            if not 16 <= self.group_size <= 256:
                raise SpecError(f"quant.kernel=nbits needs group_size from 16 to 256, got {self.group_size} "
                                "(MatMulNBits keeps one scale per group of weights; try 128)")
            if self.embeddings != "none":
                raise SpecError("quant.kernel=nbits quantizes the Linear layers only; use embeddings=none")
        if self.kernel == "openvino" and self.embeddings == "4":
            raise SpecError("quant.kernel=openvino stores the word embeddings in 8 bits or fp32: use embeddings=8 "
                            "or none")
        if self.unseen != "same" and self.kernel in ("ort", "ort-fused", "ort-static", "quanto", "nbits", "openvino"):
            raise SpecError(f"quant.kernel={self.kernel} stores the word-embedding table whole; rows of unseen tokens "
                            "in 2 bits or dropped need kernel=rtn or kernel=torch")
        if self.act_order == "on" and self.algorithm != "gptq":
            raise SpecError("quant.act_order=on orders GPTQ's rounding: use it with algorithm=gptq "
                            "(kernel=rtn or nbits)")
        if self.clip != "none" and (self.algorithm == "hqq" or self.resolved_kernel not in ("rtn", "nbits")):
            raise SpecError(f"quant.clip={self.clip} fits the ranges of our own low-bit grid: use it with kernel=rtn "
                            "or nbits and algorithm=rtn or gptq")
        if self.algorithm == "hqq":
            if self.resolved_kernel != "nbits":
                raise SpecError("quant.algorithm=hqq runs on ONNX Runtime's n-bit kernel only: use kernel=nbits "
                                "with bits 2, 4 or 8 (or algorithm=gptq with kernel=rtn)")
            if self.scheme != "asym":
                raise SpecError("quant.algorithm=hqq fits a zero point to every group: use scheme=asym")
            if self.bits == 8:
                raise SpecError("quant.algorithm=hqq runs 2 or 4 bits: ONNX Runtime's 8-bit kernel takes no fitted "
                                "(fractional) zero points; use algorithm=rtn or gptq for bits=8")

    @staticmethod
    def _layer_bits(b: float) -> int:
        if b not in (2, 3, 4, 5, 6, 7, 8, 32):
            raise SpecError(f"quant.per_layer gives a layer {b:g} bits: a layer takes 2..8 bits, or 32 to stay in fp32")
        return int(b)

    @property
    def resolved_kernel(self) -> str:
        """The kernel `auto` resolves to: real int8 for plain 8 bits, RTN (simulated latency) otherwise.

        `auto` stays in torch (chainable, and a stored auto row keeps its meaning); ONNX Runtime's n-bit
        kernel is asked for by name, `kernel=nbits`.
        """
        if self.kernel != "auto":
            return self.kernel
        plain = self.bits == 8 and not self.group_size and self.scheme == "sym" and self.algorithm == "rtn"
        return "torch" if plain and {b for _, b in self.per_layer} <= {8, 32} else "rtn"

    @property
    def terminal(self) -> bool:
        return self.resolved_kernel.startswith("ort") or self.resolved_kernel == "nbits"

    def describe(self) -> str:
        k = self.resolved_kernel
        where = {"torch": "run on torch's int8 kernel", "ort": "run on ONNX Runtime's int8 kernel",
                 "ort-fused": "run on ONNX Runtime's fused int8 transformer kernels",
                 "ort-static": "run on ONNX Runtime's int8 kernel with activation scales fixed from training text",
                 "quanto": "run on quanto's int8 kernel",
                 "nbits": f"run on ONNX Runtime's {self.bits}-bit kernel",
                 "openvino": "run on OpenVINO's int8 kernels with activation scales fixed from training text",
                 "rtn": "decoded to fp32 to run (no fast kernel here)"}[k]
        emb = f"; word embeddings in {self.embeddings} bits" if self.embeddings != "none" else ""
        emb += {"same": "", "2": "; rows of tokens unseen in training in 2 bits",
                "drop": "; rows of tokens unseen in training dropped"}[self.unseen]
        grp = f" in groups of {self.group_size}" if self.group_size else ""
        how = {"rtn": "", "hqq": ", scales fitted by HQQ",
               "gptq": ", rounded by GPTQ to keep the layers' outputs"}[self.algorithm]
        how += ", most influential inputs first" if self.act_order == "on" else ""
        how += ", each group's range clipped where that rounds closer" if self.clip == "mse" else ""
        return f"weights stored in {self.bits} bits{grp}{how}, {where}{emb}{per_layer_words(self.per_layer, ' bits')}"


@dataclass(frozen=True)
class RuntimeSpec(Spec):
    method: ClassVar[str] = "runtime"
    label: ClassVar[str] = "Another runtime (same weights)"
    explain: ClassVar[str] = ("Runs the very same weights on another engine, ONNX Runtime or OpenVINO; 'fused' also "
                              "merges each layer's small steps into a few big ones.")

    engine: str = knob("ort", cost=True, choices=("ort", "ort-fused", "openvino"), sweep="ort,ort-fused",
                       help="ort = the exported fp32 graph on ONNX Runtime; ort-fused = after the transformer "
                            "optimizer's fusions (Attention, BiasGelu, EmbedLayerNormalization); openvino = the "
                            "exported graph on OpenVINO (optional install), at its default precision: bf16 on "
                            "CPUs with bf16 units")

    @property
    def terminal(self) -> bool:
        return True

    def describe(self) -> str:
        if self.engine == "openvino":
            return "the same fp32 weights run on OpenVINO"
        fused = ", attention, embeddings and GELU fused into single kernels" if self.engine == "ort-fused" else ""
        return f"the same fp32 weights run on ONNX Runtime{fused}"


@dataclass(frozen=True)
class CastSpec(Spec):
    method: ClassVar[str] = "cast"
    label: ClassVar[str] = "Half precision"
    explain: ClassVar[str] = "Keeps every number in 16 bits instead of 32: half the size, and faster where the CPU has 16-bit units."

    dtype: str = knob("bf16", cost=True, choices=("bf16", "fp16"), sweep="bf16",
                      help="bf16 keeps fp32's range (fast on CPUs with AMX); fp16 keeps more precision")

    def describe(self) -> str:
        return f"every weight and activation in {self.dtype} (16 bits instead of 32)"


@dataclass(frozen=True)
class PruneSpec(Spec):
    method: ClassVar[str] = "prune"
    label: ClassVar[str] = "Unstructured pruning"
    explain: ClassVar[str] = "Sets the smallest weights to zero. The file shrinks; dense kernels run no faster."

    sparsity: float = knob(0.5, lo=0.0, hi=0.99, step=0.01, unit="fraction", sweep="0.3:0.9:0.1",
                           help="share of the encoder's Linear weights set to zero")
    scope: str = knob("global", choices=("global", "layer"),
                      help="magnitude: one threshold over all layers, or the same sparsity in each layer "
                           "(wanda, sparsegpt and N:M patterns compare within each output row)")
    criterion: str = knob("magnitude", cost=True, choices=("magnitude", "wanda", "sparsegpt", "obc"),
                          help="magnitude = |weight|; wanda = |weight| x the norm of its input on calibration "
                               "text from the train split (Sun et al. 2023); sparsegpt = also update the kept "
                               "weights to make up for the pruned ones, from the same text (Frantar & Alistarh 2023); "
                               "obc = the same aim, each row's weights removed a few at a time, the rest re-solved "
                               "exactly after each (Frantar et al. 2022: several times slower than sparsegpt, fewer "
                               "changed answers on validation; unstructured only; its time grows with the cube of "
                               "the model's width: about 3 minutes for 6 layers of 384 on 2 cores, so an estimated "
                               "hour for 12 of 768)")
    pattern: str = knob("unstructured", choices=("unstructured", "2:4", "4:8"),
                        help="N:M keeps the N largest of every M consecutive weights in a row (sparsity 0.5)")
    calibration: str = knob("block", cost=True, choices=("block", "sequential"),
                            help="sparsegpt, obc: measure a block's layers once before pruning it (block), or each layer "
                                 "after the earlier layers of its block are pruned (sequential: slower, fewer changed "
                                 "answers on validation)")
    refit: str = knob("off", cost=True, choices=("off", "on"),
                      help="sparsegpt: after the mask is chosen, solve each row's kept weights exactly (least squares "
                           "on the same calibration text) instead of SparseGPT's one-pass updates (slower; on validation "
                           "fewer changed answers at 2:4 and at 0.7, within noise at 0.5)")
    allocation: str = knob("uniform", cost=True, choices=("uniform", "owl", "measured"),
                           help="wanda, sparsegpt, obc: the same sparsity in every layer (uniform), or less in the layers "
                                "with more outlier weights and more elsewhere, in a band 16 points wide, same overall share "
                                "(owl, Yin et al. 2024); sparsegpt, obc: measured = each block pruned alone at several "
                                "levels on train text first, and the blocks whose answers change least get the most "
                                "zeros, same overall share (about a minute more on the default)")
    recover_steps: int = knob(0, cost=True, lo=0, hi=20000, step=1, unit="steps",
                              help="fine-tuning steps after pruning, with the zeros held fixed (0 = none)")
    schedule: str = knob("none", cost=True, choices=("none", "poly"),
                         help="poly = prune gradually during recovery (TF-MOT PolynomialDecay); needs recover_steps")
    initial_sparsity: float = knob(0.0, lo=0.0, hi=0.99, step=0.01, unit="fraction",
                                   help="sparsity where the poly schedule starts")
    recover_alpha: float = recovery_knobs()[0]
    recover_temperature: float = recovery_knobs()[1]
    recover_hidden: float = recovery_knobs()[2]
    recover_lr: float = recovery_knobs()[3]
    per_layer: tuple = per_layer_knob("sparsity (0..0.99; 0 leaves a layer dense)")

    def check(self):
        canonical_per_layer(self, "sparsity", self._layer_sparsity)
        solves = self.criterion in ("sparsegpt", "obc")  # the weights kept are updated from calibration text
        if self.schedule == "poly" and solves:
            raise SpecError(f"prune.criterion={self.criterion} prunes and updates the weights once: use schedule=none "
                            "(recover_steps still fine-tune), or criterion=wanda for a gradual schedule")
        if self.calibration != "block" and not solves:
            raise SpecError("prune.calibration=sequential applies to criterion=sparsegpt or obc only: magnitude and "
                            "wanda update no weights")
        if self.refit == "on" and self.criterion == "obc":
            raise SpecError("prune.refit=on is what criterion=obc already does after every batch it removes: "
                            "leave refit=off with obc")
        if self.refit == "on" and self.criterion != "sparsegpt":
            raise SpecError("prune.refit=on re-solves the weights SparseGPT kept: use it with criterion=sparsegpt")
        if self.criterion == "obc" and self.pattern != "unstructured":
            raise SpecError(f"prune.criterion=obc chooses each row's zeros freely: for pattern={self.pattern} use "
                            "criterion=sparsegpt (with refit=on it came closer on a test layer)")
        if self.allocation == "measured" and (not solves or self.per_layer or self.pattern != "unstructured"):
            raise SpecError("prune.allocation=measured prices each block's zeros with SparseGPT on train text: use it "
                            "with criterion=sparsegpt or obc, unstructured and no per_layer")
        if self.allocation == "owl" and (self.criterion == "magnitude" or self.per_layer
                                         or self.schedule != "none" or self.pattern != "unstructured"):
            raise SpecError("prune.allocation=owl sets each layer's sparsity from Wanda's scores: use it with "
                            "criterion=wanda, sparsegpt or obc, unstructured, schedule=none and no per_layer")
        if self.per_layer and solves:
            raise SpecError(f"prune.per_layer works with criterion=magnitude or wanda: {self.criterion} prunes every "
                            "layer to one sparsity")
        if self.per_layer and (self.schedule != "none" or self.pattern != "unstructured"):
            raise SpecError("prune.per_layer works with schedule=none and pattern=unstructured: a gradual or N:M "
                            "pruning sets one sparsity for every layer")
        if self.schedule == "poly" and self.recover_steps < 10:
            raise SpecError("prune.schedule=poly prunes gradually while fine-tuning: give recover_steps >= 10")
        if self.initial_sparsity > self.sparsity:
            raise SpecError(f"prune.initial_sparsity={self.initial_sparsity} exceeds sparsity={self.sparsity}")
        if self.pattern != "unstructured":
            n, m = (int(x) for x in self.pattern.split(":"))
            if abs(self.sparsity - (1 - n / m)) > 1e-9:
                raise SpecError(f"prune.pattern={self.pattern} keeps {n} of every {m} weights: "
                                f"give sparsity={1 - n / m:g}")
            if self.schedule == "poly":
                raise SpecError(f"prune.pattern={self.pattern} is reached in one step: use schedule=none")

    @staticmethod
    def _layer_sparsity(s: float) -> float:
        if not 0 <= s <= 0.99:
            raise SpecError(f"prune.per_layer gives a layer sparsity {s:g}: a layer takes 0..0.99")
        return round(s, 4)

    def describe(self) -> str:
        teach = " copying the original's answers" if self.recover_alpha < 1 or self.recover_hidden else ""
        rec = f", then {self.recover_steps} fine-tuning steps{teach}" if self.recover_steps else ""
        grad = " gradually" if self.schedule == "poly" else ""
        seq = ", layer by layer" if self.calibration == "sequential" else ""
        seq += ", exactly" if self.refit == "on" else ""
        how = {"magnitude": "", "wanda": " (the least useful for typical inputs)",
               "sparsegpt": f" (the least useful for typical inputs, the rest adjusted to make up{seq})",
               "obc": f" (a few at a time, those the rest can best make up for, the rest re-solved each time{seq})"
               }[self.criterion]
        pat = f" in a {self.pattern} pattern" if self.pattern != "unstructured" else ""
        pat += ", fewer in layers with outlier weights" if self.allocation == "owl" else ""
        pat += ", fewer in the blocks where they change the answers most" if self.allocation == "measured" else ""
        return (f"{self.sparsity:.0%} of the encoder's weights set to zero{how}{pat}{grad}{rec}"
                f"{per_layer_words(self.per_layer, ' sparsity')}")


@dataclass(frozen=True)
class LowRankSpec(Spec):
    method: ClassVar[str] = "lowrank"
    label: ClassVar[str] = "Low-rank factorization"
    explain: ClassVar[str] = "Replaces each big weight matrix by two thin ones (truncated SVD) that multiply to almost the same thing."

    rank: int = knob(0, lo=0, hi=65536, step=1, unit="", help="keep this many singular values per layer (0 = unset)")
    rank_fraction: float = knob(0.0, lo=0.0, hi=1.0, step=0.01, unit="fraction", sweep="0.25,0.5",
                                help="keep this share of each layer's full rank (0 = unset)")
    energy: float = knob(0.0, lo=0.0, hi=1.0, step=0.001, unit="fraction",
                         help="keep the fewest singular values holding this share of the squared energy (0 = unset)")

    def check(self):
        given = [n for n in ("rank", "rank_fraction", "energy") if getattr(self, n)]
        if len(given) != 1:
            raise SpecError("lowrank needs exactly one of rank, rank_fraction or energy above 0 "
                            f"(got {', '.join(given) or 'none'}; rank 0 would keep nothing)")

    def describe(self) -> str:
        how = (f"rank {self.rank}" if self.rank else f"{self.rank_fraction:.0%} of full rank" if self.rank_fraction
               else f"{self.energy:.1%} of the energy")
        return f"weight matrices replaced by two thin ones ({how}) where that saves weights"


@dataclass(frozen=True)
class DistillSpec(Spec):
    method: ClassVar[str] = "distill"
    label: ClassVar[str] = "Distillation"
    explain: ClassVar[str] = ("Trains a smaller student to copy the original model's answers "
                              "(and the true labels), like an apprentice learning from a master.")

    student_layers: int = knob(3, cost=True, lo=1, hi=48, step=1, unit="layers", sweep="1,2,3,4", aliases=("layers",),
                               help="transformer layers the student keeps (evenly spaced, the last one included)")
    layer_map: str = knob("", help="explicit teacher layers to copy, e.g. '0,2,4' (overrides the even spacing)")
    width: int = knob(0, cost=True, lo=0, hi=8192, step=1, unit="hidden units",
                      help="student hidden width; 0 = the teacher's width")
    width_init: str = knob("teacher", choices=("teacher", "random"),
                           help="a narrower student starts from slices of the teacher's weights, or at random")
    alpha: float = knob(0.5, lo=0.0, hi=1.0, step=0.05, unit="",
                        help="weight of the true labels' loss; 1 - alpha goes to matching the teacher")
    temperature: float = knob(2.0, lo=0.0, hi=20.0, step=0.1, lo_open=True, unit="",
                              help="softens both models' outputs before they are compared (T > 0)")
    steps: int = knob(200, cost=True, lo=0, hi=50000, step=1, unit="steps", help="training steps at batch 32")
    hidden_mse: float = knob(0.0, lo=0.0, hi=100.0, step=0.1, unit="",
                             help="weight of an extra loss matching the kept layers' hidden states (0 = off)")

    def check(self):
        if self.layer_map:
            try:
                ids = [int(x) for x in self.layer_map.split(",")]
            except ValueError:
                raise SpecError(f"distill.layer_map={self.layer_map!r} must be comma-separated layer numbers") from None
            if len(ids) != self.student_layers:
                raise SpecError(f"distill.layer_map lists {len(ids)} layers but student_layers={self.student_layers}")
            if len(set(ids)) != len(ids) or min(ids) < 0:
                raise SpecError(f"distill.layer_map={self.layer_map!r} must list distinct layers >= 0")

    def describe(self) -> str:
        w = f", width {self.width}" if self.width else ""
        return f"a student with {self.student_layers} layers{w}, trained {self.steps} steps to copy the original"


def _structured(what: str):
    """The shared knobs of the three structured-pruning specs (they differ in what they remove)."""

    @dataclass(frozen=True)
    class _S(Spec):
        fraction: float = knob(0.3, lo=0.0, hi=0.95, step=0.05, unit="fraction", sweep="0.2,0.4,0.6",
                               help=f"share of the {what} to remove for good (below 1: every layer keeps some)")
        importance: str = knob("grad", cost=True, choices=("grad", "norm"),
                               help="rank by gradient importance on training batches, or by weight size")
        recover_steps: int = knob(0, cost=True, lo=0, hi=20000, step=1, unit="steps",
                                  help="fine-tuning steps after removal (0 = none)")
        recover_alpha: float = recovery_knobs()[0]
        recover_temperature: float = recovery_knobs()[1]
        recover_hidden: float = recovery_knobs()[2]
        recover_lr: float = recovery_knobs()[3]
    return _S


@dataclass(frozen=True)
class HeadsSpec(_structured("attention heads")):
    method: ClassVar[str] = "heads"
    label: ClassVar[str] = "Prune attention heads"
    explain: ClassVar[str] = "Removes the attention heads that matter least; the matrices really shrink, so it runs faster."

    def describe(self) -> str:
        return f"{self.fraction:.0%} of the attention heads removed"


@dataclass(frozen=True)
class NeuronsSpec(_structured("feed-forward neurons")):
    method: ClassVar[str] = "neurons"
    label: ClassVar[str] = "Prune FFN neurons"
    explain: ClassVar[str] = "Removes the least useful neurons of each feed-forward block, shrinking its matrices."

    def describe(self) -> str:
        return f"{self.fraction:.0%} of the feed-forward neurons removed"


@dataclass(frozen=True)
class LayersSpec(_structured("transformer layers")):
    method: ClassVar[str] = "layers"
    label: ClassVar[str] = "Drop layers"
    explain: ClassVar[str] = "Removes whole transformer layers, the ones that change the result least."

    def describe(self) -> str:
        return f"{self.fraction:.0%} of the layers removed"
