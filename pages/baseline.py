"""Baseline: pick a model and a dataset, prepare it in the background worker, see its measured numbers."""
import streamlit as st

from compression import api
from ui import baseline_form, sidebar, state

paths, store = sidebar.page()
fp = state.current_baseline(store)
st.title("Baseline")
st.caption("A baseline is a model plus a labelled dataset. A model without a head for the dataset's labels is "
           "fine-tuned once in the background worker (refreshing the browser does not stop it) and cached.")
try:
    req, missing = baseline_form.source_form(paths)
except api.UserError as e:
    st.error(str(e))
    req, missing = None, "Prepare is greyed out until the error above is fixed."
if missing:
    st.caption(missing)
if st.button("Prepare this baseline", type="primary", disabled=req is None, key="prepare", help=missing):
    try:
        new = api.register_baseline(store, **req)
    except (api.UserError, api.SpecError) as e:
        st.error(str(e))
    else:
        api.ensure_worker(paths)
        state.set_qp(baseline=new[:12])
        st.session_state.pop("sidebar_baseline", None)
        st.rerun()

if fp:
    b = store.baseline(fp)
    st.subheader(f"{b['name']} · {fp[:12]}")
    info = b["info"] or {}
    if not b["prepared"]:
        st.info("Not prepared yet: its progress shows above while the worker prepares it.")
    else:
        c = st.columns(4)
        c[0].metric("validation accuracy (measured)", f"{info.get('val_accuracy', 0) * 100:.2f}%")
        c[1].metric("majority class (measured)", f"{info.get('majority_accuracy', 0) * 100:.2f}%")
        c[2].metric("TF-IDF + logistic regression (measured)", f"{info.get('tfidf_accuracy', 0) * 100:.2f}%")
        c[3].metric("parameters (counted)", f"{info.get('params', 0):,}")
        rows = info.get("rows", {})
        labels = ", ".join(map(str, info.get("label_names", [])))
        st.caption(f"Labels: {labels}. Split rows: train {rows.get('train')}, "
                   f"validation {rows.get('val')}, test {rows.get('test')}; sequence length "
                   f"{info.get('seq_len', 64)} tokens. Saved at `{b['path']}`.")
        st.caption("Data: " + info.get("cleaning_summary", f"{info.get('duplicates_dropped', 0)} duplicates dropped")
                   + ".", help="Rows with a blank text or no label, repeated texts and classes too rare to "
                               "stratify are dropped; texts longer than the sequence length are truncated.")
        base = state.base_row(state.results(store, fp))
        if base is None:
            st.caption("Its own measurement (accuracy, size, latency) is queued and lands shortly.")
        else:
            c = st.columns(4)
            c[0].metric(f"test accuracy ({base['accuracy_label']})", f"{base['accuracy'] * 100:.2f}%",
                        help=f"95% CI {base['accuracy_lo'] * 100:.1f}–{base['accuracy_hi'] * 100:.1f}%")
            c[1].metric(f"size ({base['size_label']})", f"{base['size_mib']:.3g} MiB")
            c[2].metric(f"latency b1 ({base['latency_label']})", f"{base['lat_b1_p50_ms']:.2f} ms")
            c[3].metric(f"latency b32 ({base['latency_label']})", f"{base['lat_b32_p50_ms']:.1f} ms")
