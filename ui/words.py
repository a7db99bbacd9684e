"""Plain words for a demo: the glossary, the hardware id and the dataset in words, the newcomer's note,
and the results table without its engineering columns.

Nothing here imports Streamlit, so each piece is testable on its own.

Example::

    >>> hardware_words("cpu-x86_64-avx512-2t")
    'this kind of computer: an x86-64 processor with AVX-512 vector units, 2 threads'
"""
from __future__ import annotations

import re

import pandas as pd

from compression.plain import plain_name

# Every engineering word the pages use, with one plain line. The sidebar's glossary lists them all;
# widgets quote a line as their hover help.
GLOSSARY = {
    "Best feasible": "The setting the page recommends: the best one that meets your limits.",
    "Constraints": "Your limits (largest size, slowest answer, lowest accuracy); settings outside them are not picked.",
    "Within noise": "An accuracy change so small that measuring again on other test sentences could undo it.",
    "Accuracy budget": "How many points of accuracy you accept to lose for a smaller or faster model.",
    "Recipe": "The exact setting in the tool's own notation, e.g. quant(kernel=ort,embeddings=8); "
              "it can be pasted into the command line.",
    "Batch 1 / batch 32": "Answering one request at a time, or 32 requests together (faster per request, "
                          "each one waits longer).",
    "Latency": "How long one answer takes, in milliseconds (ms): lower is faster.",
    "Pareto frontier": "The settings nothing else beats on both axes at once: every other point is worse "
                       "on one axis without being better on the other.",
    "Measured": "Timed on this computer by running the model.",
    "Simulated latency": "This computer has no fast kernel for the format, so the model ran unpacked and "
                         "the time is what it would be without the special hardware.",
    "Contended": "Something else was using the processor while this was timed, so the time is unreliable; "
                 "such points never make the frontier.",
    "Preview": "A quick first measurement on a sample of the test sentences; the full one replaces it.",
    "95% bootstrap CI": "The range the true accuracy most likely lies in (95% sure), found by re-drawing "
                        "the test sentences many times.",
    "Accuracy change in points": "e.g. -9.33 pts [-11.7, -6.9]: 9.33 percentage points worse than the "
                                 "original, surely between 6.9 and 11.7 worse.",
    "Bits per weight": "How many bits store each number of the model on average; the original uses 32.",
    "Nonzero params": "The model's numbers that are not zero; zeroed ones can be skipped or stored cheaply.",
    "MiB": "Mebibytes: the size of the model's weight files on disk (1 MiB is about a million bytes).",
    "Hypervolume": "One score for a whole set of settings: the area they cover towards smaller, faster "
                   "and more accurate; bigger is better.",
    "Same-session ratio": "A speed-up timed side by side with the original in one sitting, so both saw "
                          "the same computer load.",
    "Glyph": "The marker's shape; it tells how a point's time was taken (● measured, ◆ simulated, "
             "✕ contended, ○ preview).",
    "Softmax probability": "How sure the model is of its answer, from 0 to 1.",
    "ONNX Runtime": "Microsoft's engine for running models fast on a CPU; an alternative to PyTorch.",
    "Hardware id": "Which kind of computer a number was measured on (processor family, its vector units, "
                   "threads); numbers from different kinds are never mixed.",
}

# The latency axes' radio labels in explain mode ("batch 1" is jargon).
LATENCY_WORDS = {"lat_b1": "one request at a time", "lat_b32": "32 requests together",
                 "gpu_b1": "on a GPU, one at a time", "gpu_b32": "on a GPU, 32 together"}

_ISA = {"amx": "AMX matrix units", "avx512": "AVX-512 vector units", "avx2": "AVX2 vector units"}


def hardware_words(hw: str) -> str:
    """A hardware id in words: ``cpu-x86_64-avx2-2t`` -> "... an x86-64 processor with AVX2 vector units,
    2 threads". An id of another shape comes back as it is."""
    m = re.fullmatch(r"cpu-(?P<arch>[^-]+)-(?:(?P<isa>[a-z0-9]+)-)?(?P<t>\d+)t", hw or "")
    if not m:
        return hw
    arch = {"x86_64": "an x86-64", "aarch64": "an ARM", "arm64": "an ARM"}.get(m["arch"], f"a {m['arch']}")
    isa = _ISA.get(m["isa"] or "", "")
    unit = f" with {isa}" if isa else ""
    return f"this kind of computer: {arch} processor{unit}, {m['t']} thread{'s' * (m['t'] != '1')}"


def texts_noun(dataset_source: dict | None) -> str:
    """What the test rows are, for "27 of 1,275 test reviews": the embedded dataset's reviews, a file's
    text column when it names the things (``review``), else sentences."""
    src = dataset_source or {}
    if src.get("kind") == "default":
        return "test reviews"
    col = str(src.get("text_col") or "")
    if re.fullmatch(r"[a-z]{3,20}", col) and col not in ("text", "texts", "sentence", "content", "body", "input"):
        return f"test {col if col.endswith('s') else col + 's'}"
    return "test sentences"


def newcomer(preparing: bool, queued: int, name: str) -> str:
    """What the Trade-offs page will show once points land, and why, for a first visit with none yet."""
    now = (f"**Right now** the original model ({name}) is being fine-tuned on its dataset, so there is a "
           "reference to compare against; on a first visit this takes a few minutes. " if preparing else "")
    nxt = (f"**Then** {queued} setting{'s' * (queued != 1)} already queued (smaller number formats, zeroed "
           "weights, thinner matrices) are each built and measured, and every one lands here as a dot within "
           "seconds of finishing. " if queued else
           "**Next**, queue a few settings on the Sweep page; each one lands here as a dot once measured. ")
    return ("**What will appear here.** A chart with one dot per way of shrinking the model: how fast it "
            "answers (left is faster), how often it is right (higher is better) and how big it is. Above it, "
            "one sentence recommends the fastest setting that is as accurate as the original, in plain words. "
            f"\n\n{now}{nxt}\n\n**Why:** a smaller, faster model is cheaper to run, but it may answer some "
            "questions differently. Measuring each setting on the same test sentences on this computer shows "
            "exactly what you gain and what you lose, so you can pick one with confidence.")


def plain_table(df: pd.DataFrame) -> pd.DataFrame:
    """The results table for a demo: the plain name, size, speed and accuracy with their labels, and the
    recipe last; no engineering columns (CIs, p90, bits per weight, runtime)."""
    base = df[df["method"] == "baseline"]
    b = base.iloc[-1] if len(base) else None
    speed = pd.to_numeric(df.get("speedup_b1"), errors="coerce")
    if b is not None:
        speed = speed.fillna(b["lat_b1_p50_ms"] / df["lat_b1_p50_ms"])
    return pd.DataFrame({
        "setting": [plain_name(r) for r in df["recipe"]],
        "size (MiB on disk)": df["size_mib"].round(1),
        "times faster than the original": speed.round(2),
        "how the time was taken": df["latency_label"],
        "accuracy (%)": (df["accuracy"] * 100).round(1),
        "recipe": df["recipe"],
    })


def limits(max_mib: float | None = None, max_ms: float | None = None, min_acc: float | None = None) -> str:
    """The user's constraints in words ("at most 50 MiB, at least 80% accurate"); empty when there are none."""
    parts = [f"at most {max_mib:.3g} MiB" if max_mib is not None else "",
             f"at most {max_ms:.3g} ms" if max_ms is not None else "",
             f"at least {min_acc * 100:.3g}% accurate" if min_acc is not None else ""]
    return ", ".join(p for p in parts if p)


def where(hardware: str, this_machine: str, latency: str = "lat_b1", gpu: str | None = None) -> str:
    """Where the speed was timed, for "2.1× faster on this computer": this machine, another kind of
    computer, or a GPU; with "(32 requests at once)" for the batch-32 axes."""
    if latency.startswith("gpu"):
        place = f"on the GPU ({gpu or 'CUDA'})"
    else:
        place = "on this computer" if hardware == this_machine else f"on {hardware_words(hardware)}"
    return place + (" (32 requests at once)" if latency.endswith("32") else "")
