"""Trade-offs: the recommendation in plain words, the Pareto frontier of the chosen baseline, constraints,
details, and the live knob."""
import streamlit as st

from compression import api
from compression.plain import plain_name
from ui import charts, charts3d, panels, recommendation, sidebar, state, words

paths, store = sidebar.page()
fp = state.current_baseline(store)
explain = state.explain()
st.title("Trade-offs")
if not fp:
    st.info("No baseline yet. Prepare one on the Baseline page, then sweep some knobs on the Sweep page.")
    st.markdown(words.newcomer(preparing=False, queued=0, name="the model you pick"))
    st.stop()
panels.autorefresh(store, fp)
df = state.results(store, fp)
base_info = store.baseline(fp) or {}
if df.empty:  # a first visit: say what is coming instead of an empty box
    waiting = [j for j in store.jobs(baseline=fp, states=("queued", "running"))
               if j["recipe"] not in (api.PREPARE, api.BASELINE_RECIPE)]
    st.info("No results for this baseline yet: points appear here as they land.")
    st.markdown(words.newcomer(not base_info.get("prepared"), len(waiting), base_info.get("name", "")))
    st.stop()
top = st.container()  # the recommendation, filled once the constraints below are read

present = sorted(set(df["method"]))
c1, c2, c3 = st.columns([3, 1, 1])
with c1:
    chosen = state.method_filter(present, key="methods")
lats = charts.latency_axes(df)  # the GPU's batch 1 and 32 join where CUDA measured them
lat = c2.radio("latency axis", lats, index=lats.index(state.qp("lat", "lat_b1")) if state.qp("lat") in lats else 0,
               format_func=(words.LATENCY_WORDS if explain else charts.LATENCY_NAMES).get, horizontal=True, key="lat",
               help=words.GLOSSARY["Batch 1 / batch 32"])
size = c3.radio("size axis", ["size", "params"], index=int(state.qp("size", "size") == "params"),
                format_func={"size": "MiB on disk", "params": "parameters"}.get, horizontal=True, key="size")
state.set_qp(lat=lat, size=size)
gpus = sorted(df["gpu"].dropna().unique()) if lat.startswith("gpu") else []
if len(gpus) > 1:  # rows are keyed by the CPU target: timings from two GPU models never share a frontier
    gpu = st.selectbox("GPU", gpus, key="gpu", help="whose timings the GPU axes show")
    df = df[df["gpu"] == gpu]
view = df[df["method"].isin(chosen)]
if view.empty:
    st.warning("Pick at least one method.")
    st.stop()

cons = panels.constraint_sliders(view, lat)
objective, budget = recommendation.controls()
best_i = recommendation.show(top, store, fp, df, view, cons, lat, objective, budget, explain)

live_on = st.toggle("Live knob: measure one setting on release", key="live_on")
if live_on:
    panels.keep_worker_warm(paths, fp)
live_ids = panels.live_knob(paths, store, fp) if live_on else []

refs, colors = state.baseline_refs(store, fp), charts.method_colors(df["method"])
cfg = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": "tradeoffs"}}
views = {"lat-acc": (lat, "accuracy", True), "size-acc": (size, "accuracy", False), "lat-size": (lat, size, False),
         "3d": None}
names = {"lat-acc": "latency vs accuracy", "size-acc": "size vs accuracy", "lat-size": "latency vs size", "3d": "3-D"}
start = state.qp("chart") if state.qp("chart") in views else "lat-acc"
chart = st.radio("chart", list(views), index=list(views).index(start), format_func=names.get, horizontal=True,
                 key="chart", label_visibility="collapsed")
state.set_qp(chart=None if chart == "lat-acc" else chart)
picked = None
if views[chart] is None:  # only the chosen chart is drawn: a page with 500 points stays quick
    st.plotly_chart(charts.figure_3d(view, lat, colors, size=size, best_index=best_i, live=live_ids,
                                     constraints=cons), key="chart3d", config=cfg)
else:
    x, y, bubble = views[chart]
    fig = charts.tradeoff_figure(view, x, y, bubble="size" if bubble else None, refs=refs, best_index=best_i,
                                 live=live_ids, colors=colors, constraints=cons, latency=lat)
    picked = panels.selected_job(st.plotly_chart(fig, key=f"chart:{chart}", on_select="rerun",
                                                 selection_mode="points", config=cfg))
if explain:
    st.caption("Each dot is one way of shrinking the model: further left answers faster, higher is right more "
               "often, a bigger dot takes more disk. ● timed here, ◆ simulated (this computer lacks the fast "
               "kernel, so a stand-in was timed), ✕ timed while the computer was busy, ○ a quick first look. "
               "The ★ is the recommendation. Click a dot for details.")
else:
    st.caption(charts3d.caption_3d() if views[chart] is None else charts.caption(*views[chart]))

ids = view["job_id"].tolist()
default = picked if picked in ids else (int(view.loc[best_i, "job_id"]) if best_i is not None else ids[0])
recipes = dict(zip(ids, view["recipe"]))  # one lookup per option: a mask per option cost 0.2 s at 500 results
job = st.selectbox("details for", ids, index=ids.index(default), key=f"details:{picked}:{default}",
                   format_func=lambda j: plain_name(recipes[j]) if explain else f"job {j}: {recipes[j]}")
panels.details_panel(store, fp, view, job)
with st.expander("every stored result, each number with its label"):
    st.dataframe(words.plain_table(view) if explain else panels.results_table(view), hide_index=True,
                 width="stretch")
