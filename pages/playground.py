"""Playground: type a sentence; see the baseline's prediction beside the chosen compressed models'."""
import streamlit as st

from compression import api
from ui import charts, playground, sidebar, state

paths, store = sidebar.page()
fp = state.current_baseline(store)
st.title("Playground")
df = state.results(store, fp) if fp else None
base = state.base_row(df) if df is not None else None
if base is None or not store.baseline(fp)["prepared"]:
    st.info("The baseline is not prepared and measured yet; the playground opens once it is.")
    st.stop()
others = df[df["method"] != "baseline"]
on = charts.frontier(others, "lat_b1", "accuracy") if len(others) else []
ids = others["job_id"].tolist()
picks = [int(j) for j in (state.qp_list("models") or others[on]["job_id"].head(3).tolist() or ids[:3]) if int(j) in ids]
text = st.text_area("a sentence", "A warm, clever film with a superb cast.", key="sentence", max_chars=1000)
recipes = dict(zip(ids, others["recipe"]))
chosen = st.multiselect("compressed models", ids, default=picks, key="models",
                        format_func=lambda j: f"job {j}: {recipes[j]}")
state.set_qp(models=chosen or None)
if not text.strip():
    st.error("Type a sentence first.")
    st.stop()
with st.spinner("Running the models…"):
    try:
        table = playground.predictions(store, fp, df, [int(base["job_id"]), *chosen], text.strip())
    except api.UserError as e:
        st.error(str(e))
        st.stop()
st.dataframe(table, hide_index=True, width="stretch")
st.caption("Confidence is the model's softmax probability. 'This call' is one timing inside the app while it "
           "serves the page, hence contended; the stored latency is the worker's protocol timing, with its label.")
st.subheader("What each model did, in plain words")
for _, r in table.iterrows():
    st.markdown(f"- **{r['model']}**: {r.get('what it did', '')}")
for t in api.methods():
    if t.method in set(others["method"]):
        st.caption(f"{t.label}: {t.explain}")
