"""Sweep: choose methods and knob ranges, see the count and estimated time, queue it, follow it live."""
import streamlit as st

from compression import api
from ui import sidebar, state, sweeps, widgets

paths, store = sidebar.page()
fp = state.current_baseline(store)
st.title("Sweep")
if not fp:
    st.info("No baseline yet: prepare one on the Baseline page first.")
    st.stop()
if not store.baseline(fp)["prepared"]:
    st.info("This baseline is still being prepared; a sweep queued now starts as soon as it is ready.")

names = widgets.method_names()
refused = {m: why for m in names if (why := api.refusal(store, fp, m))}
default = [m for m in (state.qp_list("sweep") or [m for m in names if m not in refused][:1]) if m in names]
chosen = st.multiselect("methods", list(names), default=default, key="sweep_methods",
                        format_func=lambda m: f"{names[m]} ({m})" + (" — not for this model" if m in refused else ""),
                        help="\n\n".join(f"{m}: {why}" for m, why in refused.items()) or None)
state.set_qp(sweep=chosen or None)
df = state.results(store, fp)
existing = api.job_states(store, fp)
plan, total, fresh_n, seconds, unknown = {}, 0, 0, 0.0, 0
for m in chosen:
    with st.expander(f"{names[m]}: {widgets.explain(m)}", expanded=True):
        if m in refused:
            st.warning(refused[m])
            continue
        advanced = st.checkbox("more knobs", key=f"adv:{m}")
        try:
            values = widgets.knob_values(m, advanced)
            recipes = api.expand_recipes(m, values)
        except (api.SpecError, api.UserError) as e:
            st.error(str(e))
            continue
        fresh = [r for r in recipes if r.key not in existing]
        est_s, basis = widgets.estimate_seconds(df, m, fresh)
        if not recipes:
            st.error("This sweep is empty: pick at least one value for each knob.")
        elif not fresh:
            st.caption(f"{widgets.settings(len(recipes))}, every one already stored: nothing to run.")
        else:
            est = f"about {widgets.fmt_seconds(est_s)}{'' if basis[0] == ':' else ' '}{basis}" if est_s else basis
            st.caption(f"{widgets.settings(len(recipes))}, {len(fresh)} not yet stored: {est}.")
        plan[m], total, fresh_n = values, total + len(recipes), fresh_n + len(fresh)
        seconds += est_s or 0
        unknown += bool(fresh and not est_s)

if plan and total and not fresh_n:
    states = [existing.get(r.key) for m, v in plan.items() for r in api.expand_recipes(m, v)]
    pending, failed = sum(s in ("queued", "running") for s in states), sum(s in ("failed", "cancelled") for s in states)
    nothing = (f"Nothing to run: all {total} {'setting is' if total == 1 else 'settings are'} already stored"
               + (f"; {pending} of them queued or running now" if pending else "")
               + (f"; {failed} failed or cancelled (Retry failed, below, runs them again)" if failed else "") + ".")
    st.markdown(f"**{nothing}**")
else:
    nothing = None
    st.markdown(f"**{total} settings in all, {fresh_n} to run**" +
                (f", about {widgets.fmt_seconds(seconds)} of worker time" if seconds else "") +
                (f" (plus {unknown} method{'s' * (unknown > 1)} with no estimate)." if seconds and unknown else "."))
where = st.radio("run on", ["this machine", "a Ray cluster"], horizontal=True, key="run_on",
                 help="A Ray cluster runs one job per node at a time; the node that ran each job is listed below.")
address = st.text_input("Ray cluster address (HOST:PORT)", key="ray_address",
                        help="Needs `pip install -r requirements-ray.txt` and RAY_AUTH_MODE set for this app") \
    if where == "a Ray cluster" else None
if st.button("Queue this sweep", type="primary", disabled=not plan or not fresh_n, key="enqueue",
             help=nothing):
    try:
        ids = [api.enqueue_sweep(store, fp, m, v)[0] for m, v in plan.items()]
    except (api.SpecError, api.UserError) as e:
        st.error(str(e))
    else:
        if address:
            api.ensure_worker(paths, "ray", address)
        else:
            api.ensure_worker(paths)
        st.session_state["sweep_id"] = ids[-1]
        st.success(f"Queued {len(ids)} sweep(s): {', '.join(map(str, ids))}. The worker runs them one at a time.")
st.divider()
sweeps.progress(paths, store, fp)
