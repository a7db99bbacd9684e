"""The command line: ``python -m compression prepare | sweep | worker | results``.

Method flags are built from the spec metadata, so a registered method needs no CLI code.
Bad input prints one ``error:`` line and exits with code 2; nothing stored is touched.

Example::

    python -m compression prepare
    python -m compression sweep --method quant --bits 8
    python -m compression sweep --method prune --sparsity 0.3:0.9:0.1
    python -m compression sweep --recipe "distill(layers=3)>quant(bits=8)"
    python -m compression results --csv results.csv
    python -m compression sensitivity --method prune --levels 0.3,0.5,0.7,0.9
    python -m compression search --max-drop 1.0 --objective size
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys

from . import api
from .config import UserError
from .estimate import fmt_seconds, sweep_estimate
from .recipes import Recipe, expand, parse_values, spec_type
from .registry import CATALOGUE
from .specs import SpecError


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _knob_flags() -> dict[str, dict]:
    """flag dest -> {methods, field} over every catalogued spec."""
    flags: dict[str, dict] = {}
    for t in (m.spec for m in CATALOGUE.values()):
        for f in dataclasses.fields(t):
            e = flags.setdefault(f.name, {"methods": [], "field": f})
            e["methods"].append(t.method)
    return flags


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", help="workspace folder (default: $COMPRESSION_WORKSPACE, else the user cache dir)")
    p.add_argument("--store", help="SQLAlchemy URL of the store (default: $COMPRESSION_STORE_URL, "
                                   "else sqlite in the workspace)")


def _add_executor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: this machine, one job at a time; ray: Ray tasks on a cluster (pip install -r "
                        "requirements-ray.txt)")
    p.add_argument("--address", help="Ray cluster address HOST:PORT (with --executor ray)")


def _add_baseline(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("baseline")
    g.add_argument("--model", default="default",
                   help="'default' (embedded all-MiniLM-L6-v2), a local Hugging Face folder, or a Hub id")
    g.add_argument("--dataset", default="default",
                   help="'default' (embedded Rotten Tomatoes), a .csv/.tsv/.jsonl/.parquet file, or hub:NAME")
    g.add_argument("--text-col", default="text", help="text column of a CSV/Hub dataset")
    g.add_argument("--label-col", default="label", help="label column of a CSV/Hub dataset")
    g.add_argument("--train-steps", type=int, default=api.TRAIN_STEPS, help="fine-tuning steps when the head is new")
    g.add_argument("--lr", type=float, default=api.TRAIN_LR, help="fine-tuning learning rate")
    g.add_argument("--seed", type=int, default=api.TRAIN_SEED, help="seed of the split and the fine-tuning")
    g.add_argument("--force-train", action="store_true", help="fine-tune even if the model has a head")
    g.add_argument("--seq-len", type=int, help="tokens per input (default: 95th percentile of the data's, "
                                               "capped by the model; 64 for the embedded dataset)")
    g.add_argument("--encoding", default="utf-8", help="encoding of a CSV/TSV/JSON lines dataset file")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m compression",
                                 description="Compress Transformer classifiers and measure what each setting "
                                             "buys (size, latency) and costs (accuracy).")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("prepare", help="fine-tune and cache a baseline (does nothing if already prepared)")
    _add_common(p)
    _add_baseline(p)

    p = sub.add_parser("sweep", help="queue a grid of settings and run it (only what is missing runs)",
                       description="Knob values take a list (2,4,8) or an inclusive range start:stop:step.")
    _add_common(p)
    _add_baseline(p)
    p.add_argument("--method", help=f"one of: {', '.join(CATALOGUE)}")
    p.add_argument("--recipe", action="append", default=[],
                   help='a chain, e.g. "distill(layers=3)>quant(bits=8)"; repeatable')
    p.add_argument("--name", help="a name for this sweep")
    p.add_argument("--retry-failed", action="store_true", help="re-queue this sweep's failed and cancelled jobs")
    p.add_argument("--remeasure", action="store_true", help="measure done jobs again (old results are kept)")
    p.add_argument("--detach", action="store_true", help="queue and return; a background worker runs the jobs")
    _add_executor(p)
    g = p.add_argument_group("method knobs")
    for name, e in _knob_flags().items():
        m = e["field"].metadata
        rng = f" [{m['lo']}..{m['hi']}]" if m.get("lo") is not None else ""
        ch = f" {{{','.join(m['choices'])}}}" if m.get("choices") else ""
        g.add_argument(_flag(name), dest=f"knob_{name}", metavar="V",
                       help=f"({'/'.join(e['methods'])}) {m['help']}{rng}{ch}")

    p = sub.add_parser("sensitivity", help="compress one encoder layer at a time and score it on the validation split")
    _add_common(p)
    _add_baseline(p)
    p.add_argument("--method", default="prune", help="prune (sparsity levels) or quant (bit-widths, round-to-nearest)")
    p.add_argument("--levels", help="levels to try, e.g. 0.3,0.5,0.7,0.9 or 2,3,4,8 (default: those)")
    p.add_argument("--detach", action="store_true", help="queue and return; a background worker runs it")

    p = sub.add_parser("search", help="per-layer settings within a validation accuracy budget, smallest or fastest",
                       description="Chooses on the validation split alone (greedy from the sensitivity table, then "
                                   "optuna NSGA-II); only the chosen recipe is measured on the test split.")
    _add_common(p)
    _add_baseline(p)
    p.add_argument("--max-drop", type=float, default=1.0, help="accuracy points the model may lose on validation")
    p.add_argument("--objective", default="size", help="size or latency")
    p.add_argument("--method", help="prune or quant (default: quant; 2..8-bit RTN for size, int8 for latency)")
    p.add_argument("--levels", help="per-layer levels to choose from (default: 8,4,3,2 bits for size, 8 for latency)")
    p.add_argument("--trials", type=int, default=20, help="NSGA-II trials after the greedy start (0: greedy only)")
    p.add_argument("--search-seed", type=int, default=0, help="seed of the NSGA-II sampler")
    p.add_argument("--embeddings", help="quant: search (the search picks fp32, 8 or 4 bits for the word embeddings; "
                                        "default for size), or none, 8 or 4 for every candidate (default for latency)")
    p.add_argument("--unseen", help="quant: search (the search picks the same bits, 2 bits or dropped for the word "
                                    "embeddings' rows of tokens the train split never uses; default for size), or "
                                    "same, 2 or drop for every candidate")
    p.add_argument("--pareto", action="store_true", help="also measure the validation Pareto set on test")
    p.add_argument("--detach", action="store_true", help="queue and return; a background worker runs it")

    p = sub.add_parser("worker", help="run queued jobs until idle")
    _add_common(p)
    _add_executor(p)
    p.add_argument("--idle-exit", type=float, default=180.0, help="exit after this many idle seconds")

    p = sub.add_parser("results", help="print stored results (or write them as CSV)")
    _add_common(p)
    p.add_argument("--csv", metavar="PATH", help="write CSV with the fixed columns ('-' for stdout)")
    p.add_argument("--all", action="store_true", help="every measurement, not only the newest per job")
    p.add_argument("--baseline", help="only this baseline (fingerprint prefix)")
    return ap


def _request(args):
    return api.baseline_request(args.model, args.dataset, args.text_col, args.label_col, args.train_steps, args.lr,
                                args.seed, args.force_train, args.seq_len, args.encoding)


def _progress_printer():
    """Progress bars on stderr: one per job, via tqdm."""
    from tqdm import tqdm

    bars: dict[int, tqdm] = {}

    def on_event(job: dict, fraction: float, message: str) -> None:
        bar = bars.get(job["id"])
        if bar is None:
            bar = bars[job["id"]] = tqdm(total=100, desc=f"job {job['id']} {api.job_name(job['recipe'])}"[:60],
                                         leave=True, file=sys.stderr, bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        bar.n = int(round(100 * max(0.0, min(1.0, fraction or 0.0))))
        bar.set_postfix_str(message[:70], refresh=True)
        if message in ("done", "cancelled") or message.startswith("failed"):
            bar.close()

    return on_event


def _store(args):
    return api.open_workspace(args.workspace, args.store)


def _recipes(args) -> tuple[list[Recipe], dict]:
    knobs = {k[5:]: v for k, v in vars(args).items() if k.startswith("knob_") and v is not None}
    recipes: list[Recipe] = []
    for text in args.recipe:
        recipes.append(Recipe.parse(text))
    if args.method:
        t = spec_type(args.method)
        fields = {f.name: f for f in dataclasses.fields(t)}
        stray = sorted(set(knobs) - set(fields))
        if stray:
            raise UserError(f"{', '.join(_flag(s) for s in stray)} is not a knob of {t.method}; "
                            f"its knobs are {', '.join(_flag(n) for n in fields)}")
        values = {}
        for name, text in knobs.items():
            typ = {"int": int, "float": float}.get(str(fields[name].type), str)
            values[name] = parse_values(text, typ)
        recipes += expand(t, values)
    elif knobs:
        raise UserError(f"{', '.join(_flag(k) for k in knobs)} given without --method")
    if not recipes:
        raise UserError("nothing to sweep: give --method with knob values, or --recipe")
    return recipes, {"method": args.method, "knobs": knobs, "recipes": args.recipe}


def cmd_prepare(args) -> int:
    paths, store = _store(args)
    req = _request(args)
    fp, ids, ready = api.prepare_baseline(store, req)
    if ready:
        print(f"baseline {fp[:12]} ({req.name}) is already prepared: {ready}")
        if api.data_summary(store, fp):
            print(f"data: {api.data_summary(store, fp)}")
        return 0
    print(f"workspace: {paths.workspace}\nstore:     {paths.store_url}", file=sys.stderr)
    api.run_jobs(paths, store, ids, _progress_printer())
    if api.data_summary(store, fp):
        print(f"data: {api.data_summary(store, fp)}")
    return _report_jobs(store, ids, fp)


def cmd_sweep(args) -> int:
    recipes, request = _recipes(args)  # knob errors first: nothing is written for a bad knob
    api.refuse_missing_runtimes(recipes)  # and a runtime this machine lacks
    paths, store = _store(args)
    fp = api.add_baseline(store, _request(args))
    name = args.name or (args.method or "recipes")
    sweep_id, ids = api.enqueue_recipes(store, fp, recipes, name, request, retry_failed=args.retry_failed,
                                        remeasure=args.remeasure)
    counts = store.counts(ids=ids)
    pending = counts["queued"] + counts["running"]
    print(f"sweep {sweep_id} '{name}': {len(ids)} setting{'s' * (len(ids) != 1)}, {pending} to run "
          f"({len(ids) - pending} already done or failed)\nworkspace: {paths.workspace}\n"
          f"store:     {paths.store_url}", file=sys.stderr)
    if pending:
        todo = [Recipe.from_key(j["recipe"]) for j in store.jobs(ids=ids, states=("queued", "running"))]
        seconds, words = sweep_estimate(api.results_frame(store, baseline=fp), todo)
        print(f"time: about {fmt_seconds(seconds)} of worker time ({words})" if seconds else f"time: {words}",
              file=sys.stderr)
    if args.detach:
        api.start_worker(paths)
        print("queued; a background worker is running them (see: python -m compression results)")
        return 0
    api.run_jobs(paths, store, ids + api.baseline_jobs(store, fp), _progress_printer(), args.executor, args.address)
    return _report_jobs(store, ids, fp)


def _report_jobs(store, ids, fp) -> int:
    failed = store.jobs(ids=ids, states=("failed",))
    for j in failed:
        print(f"job {j['id']} failed: {j['error']}", file=sys.stderr)
    df = api.results_frame(store, baseline=fp)
    df = df[df["job_id"].isin(ids) | (df["method"] == "baseline")]
    print(api.text_table(df))
    return 1 if failed else 0


def _levels(args, method: str) -> list | None:
    return parse_values(args.levels, float if method == "prune" else int) if args.levels else None


def _run_analysis(args, request: dict, kind: str):
    """Queue an analysis job and run it here (or follow the worker that runs it); its job row after."""
    paths, store = _store(args)
    fp = api.add_baseline(store, _request(args))
    jid = api.enqueue_analysis(store, fp, request)
    print(f"{kind} job {jid}\nworkspace: {paths.workspace}\nstore:     {paths.store_url}", file=sys.stderr)
    if args.detach:
        api.start_worker(paths)
        print(f"queued; a background worker is running it (job {jid})")
        return paths, store, fp, None
    api.run_jobs(paths, store, [jid] + api.baseline_jobs(store, fp), _progress_printer())
    return paths, store, fp, store.job(jid)


def _unfinished(job: dict) -> int:
    print(f"job {job['id']} {job['state']}: {job['error'] or ''} (finished steps are kept: run the same command "
          "again to continue)", file=sys.stderr)
    return 1


def cmd_sensitivity(args) -> int:
    method = args.method
    request = api.sensitivity_request(method, _levels(args, method))  # bad levels: nothing is stored
    paths, store, fp, job = _run_analysis(args, request, "sensitivity")
    if job is None:
        return 0
    if job["state"] != "done":
        return _unfinished(job)
    df, base = api.sensitivity_frame(store, fp, method, request["levels"])
    if base:
        print(f"baseline on validation: {100 * base['accuracy']:.2f}% (95% CI {100 * base['accuracy_lo']:.2f}"
              f"..{100 * base['accuracy_hi']:.2f}, {base['rows']} rows)")
    print(f"accuracy drop on validation, points ({method}; one layer at a time):")
    print(df.pivot(index="unit", columns="level", values="drop").round(2).to_string())
    print(api.sensitivity_sentence(df))
    return 0


def cmd_search(args) -> int:
    request = api.search_request(args.max_drop, args.objective, args.method, _levels(args, args.method or "quant"),
                                 args.trials, args.search_seed, args.embeddings, args.pareto, args.unseen)
    paths, store, fp, job = _run_analysis(args, request, "search")
    if job is None:
        return 0
    if job["state"] != "done":
        return _unfinished(job)
    out = api.analysis_outcome(store, job["id"]) or {}
    if out.get("error"):
        raise UserError(out["error"])
    print(f"chose {out['recipe']} on validation: {100 * out['val_accuracy']:.2f}% (drop {out['drop']:.2f} points, "
          f"budget {out['max_drop']:g}; baseline {100 * out['baseline_val_accuracy']:.2f}%), "
          f"{out['objective_label']}: {out['objective_value']:.3g}; {out['trials']} trials")
    ids = [out["job_id"], *out.get("pareto_job_ids", [])]
    print(f"measuring {'it' if len(ids) == 1 else f'it and the validation Pareto set ({len(ids)} recipes)'} on the "
          f"test split (job{'s' * (len(ids) > 1)} {', '.join(map(str, ids))}, origin=search)", file=sys.stderr)
    api.run_jobs(paths, store, ids, _progress_printer())
    return _report_jobs(store, ids, fp)


def cmd_worker(args) -> int:
    paths, store = _store(args)
    print(f"worker {os.getpid()} on workspace {paths.workspace}\nstore: {paths.store_url}", file=sys.stderr,
          flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a polite stop still runs the cleanup

    def log(job, fraction, message):
        if job["id"] is None:  # the app asked to keep a baseline warm for the live knob
            print(f"baseline {job['baseline'][:12]}: {'loaded and warm' if message == 'warm' else message}",
                  file=sys.stderr, flush=True)
        elif message in ("done", "cancelled") or message.startswith("failed"):
            print(f"job {job['id']}: {message}", file=sys.stderr, flush=True)

    n = api.run_worker(paths, store, args.executor, args.address, idle_exit=args.idle_exit, on_event=log)
    if n is not None:
        print(f"worker exiting after {n} jobs (idle)", file=sys.stderr)
    return 0


def cmd_results(args) -> int:
    paths, store = _store(args)
    fp = None
    if args.baseline:
        match = api.baselines_matching(store, args.baseline)
        if len(match) != 1:
            raise UserError(f"--baseline {args.baseline!r} matches {len(match)} baselines")
        fp = match[0]
    df = api.results_frame(store, baseline=fp, latest=not args.all)
    if args.csv:
        df.to_csv(sys.stdout if args.csv == "-" else args.csv, index=False)
        if args.csv != "-":
            print(f"wrote {len(df)} rows to {args.csv}", file=sys.stderr)
        return 0
    print(f"workspace: {paths.workspace}\nstore:     {paths.store_url}")
    for b in store.baselines():
        if fp and b["fingerprint"] != fp:
            continue
        info = b["info"] or {}
        state = "prepared" if b["prepared"] else "not prepared yet"
        refs = (f"; majority {info['majority_accuracy'] * 100:.1f}%, TF-IDF {info['tfidf_accuracy'] * 100:.1f}% "
                f"(measured)" if "tfidf_accuracy" in info else "")
        print(f"\nbaseline {b['fingerprint'][:12]}: {b['name']} ({state}{refs})")
        sub = df[df["baseline"] == b["fingerprint"][:12]]
        print(api.text_table(sub))
        bad = [j for j in store.jobs(baseline=b["fingerprint"]) if j["state"] in ("failed", "cancelled")]
        for j in bad:
            print(f"  job {j['id']} {j['state']}: {j['error']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = build_parser().parse_args(argv)
    try:
        return {"prepare": cmd_prepare, "sweep": cmd_sweep, "worker": cmd_worker, "results": cmd_results,
                "sensitivity": cmd_sensitivity, "search": cmd_search}[args.cmd](args)
    except (UserError, SpecError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished jobs are kept; run the same command again to finish the rest",
              file=sys.stderr)
        return 130
