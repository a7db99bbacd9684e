"""Search: which layers can take compression (sensitivity on validation), and the best per-layer setting within a
budget (greedy, then optuna NSGA-II), with its trials as they finish. Only the chosen recipe is measured on test."""
import streamlit as st

from compression import api
from ui import search, sidebar, state

paths, store = sidebar.page()
fp = state.current_baseline(store)
st.title("Search")
if not fp or not store.baseline(fp)["prepared"]:
    st.info("No prepared baseline yet: prepare one on the Baseline page first.")
    st.stop()

st.subheader("Which layers can take it")
c1, c2, c3 = st.columns([1, 2, 1])
method = c1.selectbox("method", ["prune", "quant"], key="sens_method",
                      format_func=lambda m: {"prune": "pruning (sparsity)", "quant": "quantization (bits, RTN)"}[m])
levels_text = c2.text_input("levels", {"prune": "0.3,0.5,0.7,0.9", "quant": "2,3,4,8"}[method], key=f"levels:{method}")
if c3.button("Run sensitivity", key="run_sens"):
    try:
        levels = api.parse_values(levels_text, float if method == "prune" else int)
        api.enqueue_sensitivity(store, fp, method, levels)
        api.ensure_worker(paths)
    except (api.UserError, api.SpecError) as e:
        st.error(str(e))
runs = [j for j in api.analyses(store, fp, "sensitivity") if j["request"]["method"] == method]


@st.fragment(run_every=2 if runs and runs[0]["state"] in ("queued", "running") else None)
def sensitivity_panel():
    job = store.job(runs[0]["id"]) if runs else None
    st.caption(search.job_line(job))
    if job is None:
        return
    df, base = api.sensitivity_frame(store, fp, method, runs[0]["request"]["levels"])
    st.plotly_chart(search.heatmap(df, base, method), width="stretch", key="heatmap_chart")
    st.markdown(api.sensitivity_sentence(df))
    if job["state"] in ("queued", "running") and st.button("Stop", key="stop_sens"):
        store.cancel([job["id"]])


sensitivity_panel()

st.subheader("The best setting within my budget")
c1, c2, c3 = st.columns(3)
max_drop = c1.number_input("accuracy budget (points lost on validation)", value=1.0, step=0.1, key="max_drop")
objective = c2.radio("objective", ["size", "latency"], horizontal=True, key="objective",
                     help="size: mixed 2–8 bit weights (RTN) per layer, and the word embeddings in fp32, 8 or 4 "
                          "bits; latency: int8 where it costs little, fp32 elsewhere")
trials = c3.number_input("NSGA-II trials after the greedy start", 0, 500, 20, key="trials")
pareto = st.checkbox("also measure the validation Pareto set on test", key="pareto",
                     help="every trial no other beats on both validation accuracy and the objective, each measured by "
                          "the full protocol and landing with origin=search; otherwise only the chosen recipe")
if st.button("Start search", type="primary", key="start_search"):
    try:
        st.session_state["search_job"] = api.enqueue_search(store, fp, max_drop, objective, trials=int(trials),
                                                            pareto=pareto)
        api.ensure_worker(paths)
    except (api.UserError, api.SpecError) as e:
        st.error(str(e))
found = api.analyses(store, fp, "search")
jid = st.session_state.get("search_job") or (found[0]["id"] if found else None)


@st.fragment(run_every=2 if jid and store.job(jid)["state"] in ("queued", "running") else None)
def search_panel():
    job = store.job(jid) if jid else None
    st.caption(search.job_line(job))
    if job is None:
        return
    req = next((j["request"] for j in api.analyses(store, fp, "search") if j["id"] == jid), {})
    out = api.analysis_outcome(store, jid) or {}
    if out.get("error"):
        st.error(out["error"])
    base = api.sensitivity_frame(store, fp, req.get("method", "quant"), req.get("levels"))[1]
    fig = search.trials_figure(api.search_trials(store, jid), base and base["accuracy"], req.get("max_drop", 1.0),
                               out.get("recipe_key"))
    st.plotly_chart(fig, width="stretch", key="trials_chart")
    if out.get("recipe"):
        final = store.job(out["job_id"])
        st.success(f"Chose `{out['recipe']}` on validation ({100 * out['val_accuracy']:.2f}%, drop {out['drop']:.2f} "
                   f"points). Its test measurement (origin=search) is job {out['job_id']}: {final['state']}; "
                   "it lands on the Trade-offs page beside the uniform settings.")
    if out.get("pareto_job_ids"):
        done = sum(store.job(j)["state"] == "done" for j in out["pareto_job_ids"])
        st.caption(f"The validation Pareto set's {len(out['pareto_job_ids'])} other recipes are measured on test too "
                   f"(origin=search): {done} done.")
    if job["state"] in ("queued", "running") and st.button("Stop (keeps the trials found)", key="stop_search"):
        store.cancel([jid])


search_panel()
