"""Playground: type a sentence; see the original's prediction beside the picked compressed models', in picked order,
and find test sentences where they disagree."""
import streamlit as st

from compression import api
from compression.plain import plain_name
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
                        format_func=lambda j: plain_name(recipes[j]) if state.explain() else f"job {j}: {recipes[j]}")
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
st.dataframe(playground.highlight(table), hide_index=True, width="stretch")
st.caption("Rows follow the order you picked the models in, the original first; a highlighted row gives a "
           "different answer from the original's. Confidence is the model's softmax probability (how sure it is, "
           "0–100%). The latency is the worker's stored batch-1 timing of that model, with its label.")

if chosen and st.button("Find test sentences where these models disagree with the original", key="find_disagree"):
    bar = st.progress(0.0, "reading the stored answers…")
    try:
        found, source = playground.disagreements(store, fp, df, [int(j) for j in chosen],
                                                 progress=lambda f, msg: bar.progress(f, msg))
    except api.UserError as e:
        st.error(str(e))
    else:
        st.session_state["disagreements"] = (tuple(chosen), found, source)
    bar.empty()
kept = st.session_state.get("disagreements")
if kept and kept[0] == tuple(chosen):
    _, found, source = kept
    st.markdown(f"**{len(found)} test sentence{'s' * (len(found) != 1)} where a picked model disagrees with the "
                f"original** (from {source}).")
    if len(found):
        st.dataframe(found.head(500), hide_index=True, width="stretch")
        st.selectbox("try one of them above", [""] + found["text"].head(500).tolist(), key="try_disagree",
                     on_change=lambda: st.session_state.update(sentence=st.session_state["try_disagree"] or
                                                               st.session_state.get("sentence", "")))
st.subheader("What each model did, in plain words")
for _, r in table.iterrows():
    st.markdown(f"- **{r['model']}**: {r.get('what it did', '')}")
for t in api.methods():
    if t.method in set(others["method"]):
        st.caption(f"{t.label}: {t.explain}")
