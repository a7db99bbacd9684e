"""The dashboard's router. For now one page: the stored results of the shared store."""
import streamlit as st

from compression import resolve
from compression.report import results_frame
from compression.store import Store

st.set_page_config(page_title="Compression trade-off explorer", layout="wide")
paths = resolve()
st.sidebar.caption(f"Workspace: `{paths.workspace}`  \nStore: `{paths.store_url}`")
st.title("Compression trade-off explorer")
paths.workspace.mkdir(parents=True, exist_ok=True)
df = results_frame(Store(paths.store_url))
if df.empty:
    st.info("No results yet. Run `python -m compression prepare` then "
            "`python -m compression sweep --method quant --bits 8`.")
else:
    st.dataframe(df, width="stretch", hide_index=True)
