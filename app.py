"""The dashboard's router: st.navigation over pages/, the shared sidebar, and the first-run start. No logic."""
import streamlit as st

from ui import sidebar

st.set_page_config(page_title="Compression trade-off explorer", layout="wide")
nav = st.navigation([
    st.Page("pages/tradeoffs.py", title="Trade-offs", icon=":material/show_chart:", default=True),
    st.Page("pages/sweep.py", title="Sweep", icon=":material/tune:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    st.Page("pages/search.py", title="Search", icon=":material/travel_explore:"),
    st.Page("pages/playground.py", title="Playground", icon=":material/chat:"),
    st.Page("pages/baseline.py", title="Baseline", icon=":material/database:"),
])
sidebar.frame()
st.session_state["_in_app"] = True  # pages check it (see ui.sidebar.page)
try:
    nav.run()
finally:
    st.session_state["_in_app"] = False
