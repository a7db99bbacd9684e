"""Compare: methods side by side against compression ratio and speedup, ratios, hypervolume, exports."""
import streamlit as st

from compression import api
from ui import charts, comparison, sidebar, state

paths, store = sidebar.page()
fp = state.current_baseline(store)
st.title("Compare methods")
df = state.results(store, fp) if fp else None
base = state.base_row(df) if df is not None else None
if base is None:
    st.info("Nothing to compare yet: the baseline's own measurement has not landed. Prepare a baseline and sweep.")
    st.stop()
refs = state.baseline_refs(store, fp)
present = sorted(set(df["method"]))
chosen = state.method_filter(present, key="cmp_methods")
view = df[df["method"].isin(chosen) | (df["method"] == "baseline")]
colors = charts.method_colors(df["method"])
lats = charts.latency_axes(view)  # the GPU's join where CUDA measured them; shared with Trade-offs via the URL
lat = st.radio("speedup and hypervolume on", lats, horizontal=True, key="cmp_lat", format_func=charts.LATENCY_NAMES.get,
               index=lats.index(state.qp("lat")) if state.qp("lat") in lats else 0)
state.set_qp(lat=lat)
fig_c = comparison.compare_figure(view, base, "compression", colors)
fig_s = comparison.compare_figure(view, base, "speedup", colors, latency=lat)
c1, c2 = st.columns(2)
c1.plotly_chart(fig_c, key="cmp_c", config={"displaylogo": False})
c2.plotly_chart(fig_s, key="cmp_s", config={"displaylogo": False})

majority = refs["majority"] if refs["majority"] is not None else 0.5
hv = charts.hypervolumes(view, base, majority, lat)
st.subheader("Hypervolume per method")
st.caption("Volume each method's settings dominate on (size ratio, same-session latency ratio at "
           f"{charts.LATENCY_NAMES[lat]}, accuracy), "
           f"reference point (1, 1, majority-class accuracy {majority * 100:.1f}%). Bigger is better; contended "
           "latencies are left out.")
st.dataframe(hv, hide_index=True, width="stretch",
             column_config={"hypervolume": st.column_config.NumberColumn(format="%.4f")})
st.subheader("Ratios to the baseline")
st.caption("Each speedup is the setting timed against the baseline in the same session; the baseline's own row "
           "is 1.00 by definition (its job timed it against itself, so any other number would be noise).")
table = comparison.ratios(view, base)
st.dataframe(table, hide_index=True, width="stretch",
             column_config={c: st.column_config.NumberColumn(format="%.2f") for c in table.columns
                            if "×" in c or c.endswith(("%", "pts"))})

st.subheader("Export")
e1, e2, e3, e4 = st.columns(4)
e1.download_button("Ratios (CSV)", table.to_csv(index=False), "compare.csv", "text/csv", key="csv")
e2.download_button("All results (CSV, fixed columns)", df[api.CSV_COLUMNS].to_csv(index=False), "results.csv",
                   "text/csv", key="csv_all")
e3.download_button("Chart (PNG)", lambda: comparison.image(fig_c), "compare.png", "image/png", key="png")
e4.download_button("Report (HTML, offline)", lambda: comparison.html_report(
    "Compression trade-offs", [fig_c, fig_s, charts.tradeoff_figure(view, lat, "accuracy", refs=refs, colors=colors)],
    [("Hypervolume per method", hv), ("Ratios to the baseline", table)],
    note=f"Baseline {store.baseline(fp)['name']} ({fp[:12]}), hardware {state.current_hardware()}. "
         "Every number carries its label."),
    "report.html", "text/html", key="html")
