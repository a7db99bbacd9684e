"""SparseGPT (pruning that updates the surviving weights from a calibration Hessian), the Hessians it reads
from train-split text only, and hidden-state matching in distillation-aware recovery."""
from __future__ import annotations

import copy

import pytest
import torch

from compression.engine import compress
from compression.methods.distill import hidden_mse, teacher_loss
from compression.methods.hessian import layer_hessians
from compression.methods.prune import masks_for
from compression.methods.sparsegpt import obc_layer, refit_kept, sparsegpt_layer
from compression.methods.structured import recovery_loss
from compression.recipes import Recipe
from compression.specs import LayersSpec, PruneSpec, SpecError
from compression.training import cross_entropy
from compression.workload import Workload
from conftest import tiny_bert_split


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("sg")
    model, tok, df = tiny_bert_split(d)
    batch = dict(tok(df["text"].tolist()[:16], padding=True, truncation=True, max_length=64, return_tensors="pt"))
    return model, tok, df, batch


class Untouchable:
    """A split that fails the test as soon as anything reads it."""

    def __getattr__(self, name):
        raise AssertionError(f"calibration read the held-out split ({name})")

    def __getitem__(self, key):
        raise AssertionError("calibration read the held-out split")


class Recording(Workload):
    """A workload that remembers every text it encodes."""

    seen: list

    def encode(self, texts, pad_to_max: bool = False):
        self.seen = getattr(self, "seen", []) + list(texts)
        return super().encode(texts, pad_to_max)


def correlated_layer(seed=0, n=2000, d_in=64, d_out=32):
    """A Linear and inputs whose features are strongly correlated and of unequal scale."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g) @ torch.randn(8, d_in, generator=g) + 0.1 * torch.randn(n, d_in, generator=g)
    x = x * torch.linspace(0.2, 3.0, d_in)
    lin = torch.nn.Linear(d_in, d_out, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(d_out, d_in, generator=g))
    return lin, x


@pytest.mark.parametrize("pattern", ["unstructured", "2:4", "4:8"])
def test_sparsegpt_reconstructs_the_layers_output_better_than_wanda_and_magnitude(pattern):
    lin, x = correlated_layer()
    w = lin.weight.detach()
    pruned = sparsegpt_layer(w, x.T @ x / len(x), 0.5, pattern)
    wanda = w * masks_for([("l", lin)], 0.5, "layer", norms={"l": x.norm(dim=0)}, pattern=pattern)["l"]
    magnitude = w * masks_for([("l", lin)], 0.5, "layer", pattern=pattern)["l"]

    def error(v):
        return float((x @ v.T - x @ w.T).norm())

    assert error(pruned) < 0.8 * error(wanda) and error(pruned) < error(magnitude)
    if pattern == "unstructured":
        assert (pruned == 0).sum(1).tolist() == [32] * 32  # every row loses exactly half
    else:
        n, m = (int(v) for v in pattern.split(":"))
        assert ((pruned != 0).reshape(32, -1, m).sum(-1) == n).all()
    assert not torch.equal(pruned[pruned != 0], w[pruned != 0]), "the surviving weights are updated"


def test_sparsegpt_meets_an_odd_sparsity_in_every_row_and_leaves_a_ragged_tail_dense():
    lin, x = correlated_layer(d_in=70)
    pruned = sparsegpt_layer(lin.weight, x.T @ x / len(x), 0.7)
    assert (pruned == 0).sum(1).tolist() == [round(0.7 * 70)] * 32
    pruned = sparsegpt_layer(lin.weight, x.T @ x / len(x), 0.5, "4:8")
    assert (pruned[:, 64:] != 0).all() and ((pruned[:, :64] != 0).reshape(32, 8, 8).sum(-1) == 4).all()


def test_hessians_come_from_the_first_train_texts_only_and_leave_padding_out(tiny, tmp_path):
    model, tok, df, _ = tiny
    w = Recording(tok, df, Untouchable(), ["negative", "positive"], scratch=tmp_path)
    name, lin = next((n, m) for n, m in model.named_modules() if n.endswith("layer.1.attention.self.query"))
    h = layer_hessians(model, [(name, lin)], w, n_texts=20)[name]
    assert w.seen == df["text"].tolist()[:20]
    # the same texts one at a time (no padding at all) give the same matrix
    xs = []
    handle = lin.register_forward_pre_hook(lambda _m, args: xs.append(args[0][0].detach()))
    with torch.no_grad():
        for text in df["text"].tolist()[:20]:
            model(**dict(tok([text], return_tensors="pt")))
    handle.remove()
    x = torch.cat(xs)
    assert torch.allclose(h, 2 * x.T @ x / len(x), atol=1e-4)  # H = 2·XᵀX / n, as hessian.py defines it


def test_prune_with_sparsegpt_calibrates_on_train_text_and_keeps_each_rows_share(tiny, tmp_path):
    model, tok, df, batch = tiny
    w = Recording(tok, df, Untouchable(), ["negative", "positive"], scratch=tmp_path, teacher=model)
    cm = compress(model, Recipe((PruneSpec(sparsity=0.5, criterion="sparsegpt"),)), w)
    assert set(w.seen) <= set(df["text"].tolist()[:128])
    assert len(w.seen) == 3 * 128  # one calibration pass per block: later blocks see the pruned earlier ones
    layers = [(n, m) for n, m in cm.module.named_modules()
              if isinstance(m, torch.nn.Linear) and ".layer." in n]
    for n, m in layers:
        assert ((m.weight == 0).sum(1) == m.in_features // 2).all(), n
    assert "SparseGPT" in cm.notes[0] and cm.info["criterion"] == "sparsegpt"
    cm = compress(model, Recipe((PruneSpec(sparsity=0.5, pattern="2:4", criterion="sparsegpt"),)), w)
    assert cm.info["sparsity"] == pytest.approx(0.5, abs=0.01)
    with pytest.raises(SpecError, match="sparsegpt prunes and updates the weights once"):
        PruneSpec(sparsity=0.8, criterion="sparsegpt", schedule="poly", recover_steps=20)


def test_hidden_state_mse_is_zero_for_the_teacher_itself_and_positive_otherwise(tiny, tmp_path):
    model, tok, df, batch = tiny
    labels = torch.zeros(batch["input_ids"].shape[0], dtype=torch.long)
    loss = teacher_loss(model, alpha=1.0, temperature=2.0, hidden=1.0)
    same = copy.deepcopy(model)
    with torch.no_grad():
        assert float(loss(same, batch, labels)) == pytest.approx(float(cross_entropy(same, batch, labels)), abs=1e-5)
        other = copy.deepcopy(model)
        other.bert.encoder.layer[0].output.LayerNorm.weight.mul_(0.5)  # the first layer's states, halved
        assert float(loss(other, batch, labels)) > float(cross_entropy(other, batch, labels)) + 0.05
    w = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path, teacher=model)
    assert recovery_loss(PruneSpec(recover_hidden=0.5), w) is not cross_entropy  # labels plus hidden states


def test_hidden_state_mse_compares_each_kept_layer_with_the_layer_it_was():
    mask = torch.ones(2, 5)
    e, h1, h2, h3 = (torch.randn(2, 5, 8) for _ in range(4))
    teacher = (e, h1, h2, h3)
    assert float(hidden_mse((e, h2, h3), teacher, mask, layer_map=[1, 2])) == 0.0
    assert float(hidden_mse((e, h2, h3), teacher, mask, layer_map=[0, 2])) > 0.1
    assert float(hidden_mse((e, h2, h3), teacher, mask)) == 0.0  # other depth, no map: the last state only
    padded = torch.tensor([[1.0, 1, 1, 0, 0]] * 2)
    h3_pad = h3.clone()
    h3_pad[:, 3:] += 5.0  # differences on padding do not count
    assert float(hidden_mse((e, h1, h2, h3_pad), teacher, padded)) == 0.0


def test_a_recovered_run_says_it_matched_the_originals_hidden_states(tiny, tmp_path):
    model, tok, df, _ = tiny
    w = Workload(tok, df, df, ["negative", "positive"], scratch=tmp_path, teacher=model)
    cm = compress(model, Recipe((PruneSpec(sparsity=0.5, recover_steps=2, recover_alpha=0.5,
                                           recover_hidden=0.5),)), w)
    assert "against the original's answers and hidden states" in cm.notes[0]
    cm = compress(model, Recipe((LayersSpec(fraction=0.34, importance="norm", recover_steps=2,
                                            recover_hidden=1.0),)), w)
    assert any("fine-tuning steps against the original's hidden states" in n for n in cm.notes)


def test_sparsegpts_per_block_mask_meets_the_layers_sparsity_with_rows_of_different_shares():
    """The reference's mask (one threshold per block of columns across rows), kept to compare with ours."""
    lin, x = correlated_layer()
    lin.weight.data[:4] *= 10  # a few rows of large weights: a shared threshold prunes them less
    pruned = sparsegpt_layer(lin.weight, x.T @ x / len(x), 0.5, mask="block")
    per_row = (pruned == 0).sum(1)
    assert int(per_row.sum()) == 32 * 32 and per_row[:4].max() < 32 and per_row.max() > 32


@pytest.mark.parametrize("pattern,mask", [("unstructured", "row"), ("unstructured", "block"), ("2:4", "row")])
def test_refit_solves_the_kept_weights_exactly_and_keeps_sparsegpts_zeros(pattern, mask):
    lin, x = correlated_layer(d_in=48, d_out=12)
    w = lin.weight.detach()
    h = x.T @ x / len(x)
    plain = sparsegpt_layer(w, h, 0.5, pattern, mask=mask)
    refit = sparsegpt_layer(w, h, 0.5, pattern, mask=mask, refit=True)
    assert torch.equal(refit == 0, plain == 0), "the refit keeps SparseGPT's mask"

    def error(v):
        return float((x @ v.T - x @ w.T).norm())

    assert error(refit) < error(plain)
    # each row against an independent least-squares solve of the same dampened objective
    lam = 0.01 * float(torch.diag(h).mean())
    xd, wd = x.double() / len(x) ** 0.5, w.double()
    for r in range(w.shape[0]):
        s = (plain[r] != 0).nonzero().flatten()
        a = torch.cat([xd[:, s], lam ** 0.5 * torch.eye(len(s), dtype=torch.float64)])
        b = torch.cat([xd @ wd[r], lam ** 0.5 * wd[r, s]])
        direct = torch.linalg.lstsq(a, b[:, None]).solution.flatten()
        assert torch.allclose(refit[r, s].double(), direct, atol=1e-4), r  # H itself is float32


def test_prune_with_refit_names_it_and_is_refused_without_sparsegpt(tiny, tmp_path):
    model, tok, df, _ = tiny
    w = Workload(tok, df, Untouchable(), ["negative", "positive"], scratch=tmp_path)
    plain = compress(copy.deepcopy(model), Recipe((PruneSpec(sparsity=0.5, criterion="sparsegpt"),)), w)
    spec = PruneSpec(sparsity=0.5, criterion="sparsegpt", refit="on")
    cm = compress(copy.deepcopy(model), Recipe((spec,)), w)
    assert "solved exactly" in cm.notes[0] and "exactly" in spec.describe()
    assert cm.info["sparsity"] == pytest.approx(0.5, abs=0.01)
    name = "bert.encoder.layer.0.attention.self.query.weight"
    a, b = dict(plain.module.named_parameters())[name], dict(cm.module.named_parameters())[name]
    assert torch.equal(a == 0, b == 0) and not torch.allclose(a, b)  # the first block: same mask, new values
    with pytest.raises(SpecError, match="refit=on"):
        PruneSpec(sparsity=0.5, criterion="wanda", refit="on")


def test_refit_stays_exact_on_a_bert_sized_layer_after_the_protocol_sets_the_threads():
    """torch 2.13's batched float64 LU returned garbage here once set_num_threads had run (the worker runs it)."""
    import numpy as np

    lin, x = correlated_layer(n=3000, d_in=1536, d_out=16)
    torch.set_num_threads(torch.get_num_threads())
    h = x.T @ x / len(x)
    refit = sparsegpt_layer(lin.weight, h, 0.8, refit=True)
    hd = h.double() + 0.01 * float(torch.diag(h).mean()) * torch.eye(1536, dtype=torch.float64)
    w = lin.weight.detach().double()
    for r in range(16):
        s = (refit[r] != 0).nonzero().flatten().numpy()
        assert len(s) == 307
        direct = np.linalg.solve(hd.numpy()[np.ix_(s, s)], (hd.numpy() @ w[r].numpy())[s])
        assert np.allclose(refit[r, s].numpy(), direct, atol=1e-4), r


def test_obc_keeps_each_rows_share_solves_its_kept_weights_exactly_and_beats_sparsegpt_with_the_refit():
    lin, x = correlated_layer(d_in=96, d_out=24)
    w = lin.weight.detach()
    h = x.T @ x / len(x)
    obc = obc_layer(w, h, 0.5)
    assert ((obc == 0).sum(1) == 48).all(), "half of every row is zero"
    refit = sparsegpt_layer(w, h, 0.5, refit=True)
    lam = 0.01 * float(torch.diag(h).mean())

    def loss(v):  # the dampened objective both minimise: (w - w0)^T (H + lam I) (w - w0), summed over rows
        d = (v - w).double()
        return float(((d @ h.double()) * d).sum() + lam * (d ** 2).sum())

    assert loss(obc) < 0.95 * loss(refit), "the greedy mask is closer than SparseGPT's one pass, even refitted"
    # its kept weights are the least-squares optimum for its own mask: refitting them changes nothing
    assert torch.allclose(refit_kept(w, obc, h), obc, atol=2e-4)


def test_obc_redoes_a_row_in_float64_where_its_float32_solve_breaks_down(monkeypatch):
    lin, x = correlated_layer(d_in=64, d_out=8)
    w = lin.weight.detach()
    h = x.T @ x / len(x)
    clean = obc_layer(w, h, 0.5)
    real, calls = torch.linalg.cholesky, {"float32": 0}

    def flaky(a, *args, **kwargs):  # float32 loses definiteness on row 3's first batch (an injected failure)
        if a.dtype == torch.float32 and a.shape[0] < 64:
            calls["float32"] += 1
            if calls["float32"] == 3 * 8 + 1:
                raise torch.linalg.LinAlgError("not positive definite")
        return real(a, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky", flaky)
    out = obc_layer(w, h, 0.5)
    assert calls["float32"] > 3 * 8 + 1, "the rows after the failed one went on in float32"
    assert ((out == 0).sum(1) == 32).all(), "every row, the redone one too, keeps its share"
    assert torch.equal(out != 0, clean != 0), "the float64 redo chooses the same zeros"
    assert torch.allclose(out, clean, atol=1e-4)
    assert torch.allclose(refit_kept(w, out, h), out, atol=2e-4), "and solves the redone row's kept weights exactly"


def test_prune_with_obc_prunes_every_layer_to_its_share_from_train_text_and_refuses_what_it_cannot_do(tiny, tmp_path):
    model, tok, df, batch = tiny
    bar = []
    w = Recording(tok, df, Untouchable(), ["negative", "positive"], scratch=tmp_path,
                  progress=lambda f, m: bar.append((f, m)))
    spec = PruneSpec(sparsity=0.5, criterion="obc")
    cm = compress(copy.deepcopy(model), Recipe((spec,)), w)
    assert set(w.seen) <= set(df["text"]), "calibration read the train split only"
    obc = [(f, m) for f, m in bar if m.startswith("OBC")]
    assert [f for f, _ in obc] == sorted(f for f, _ in obc), "the bar only moves forward"
    first = {f for f, m in obc if "block 1 of" in m}
    assert len(first) > 2 and any("intermediate.dense: 0% of its rows" in m for _, m in obc), \
        "the bar moves inside a block, layer by layer, and names the layer"
    assert "OBC" in cm.notes[0] and "a few at a time" in spec.describe()
    for name, p in cm.module.named_parameters():
        if name.startswith("bert.encoder.layer.") and name.endswith(".weight") and p.dim() == 2:
            assert ((p == 0).sum(1) == p.shape[1] // 2).all(), name
    sg = compress(copy.deepcopy(model), Recipe((PruneSpec(sparsity=0.5, criterion="sparsegpt"),)), w)
    name = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(dict(sg.module.named_parameters())[name] == 0, dict(cm.module.named_parameters())[name] == 0)
    for bad, word in [(dict(refit="on"), "refit"), (dict(pattern="2:4"), "pattern"),
                      (dict(schedule="poly", recover_steps=20), "schedule"),
                      (dict(per_layer="0:0.3"), "per_layer")]:
        with pytest.raises(SpecError, match=word):
            PruneSpec(**{"sparsity": 0.5, "criterion": "obc", **bad})


def test_allocate_trades_zeros_between_blocks_at_the_same_overall_share():
    from compression.methods.allocate import allocate

    steep, flat = {0.4: 1.0, 0.5: 2.0, 0.6: 9.0}, {0.4: 1.0, 0.5: 1.2, 0.6: 1.5}
    assert allocate({0: steep, 1: flat}, {0: 10, 1: 10}, 0.5) == {0: 0.4, 1: 0.6}
    levels = allocate({0: steep, 1: flat, 2: flat}, {0: 10, 1: 10, 2: 30}, 0.5)  # blocks of unequal size
    assert sum(levels[b] * s for b, s in {0: 10, 1: 10, 2: 30}.items()) / 50 == pytest.approx(0.5)
    assert levels[0] < 0.5 < levels[2]
    same = {0.3: 1.0, 0.5: 2.0, 0.7: 3.0}
    assert allocate({0: same, 1: same}, {0: 5, 1: 5}, 0.5) == {0: 0.5, 1: 0.5}  # no reason to differ


def test_measured_allocation_gives_a_block_that_changes_nothing_the_most_zeros(tiny, tmp_path):
    model, tok, df, _ = tiny
    model = copy.deepcopy(model)
    with torch.no_grad():  # the last block barely writes to the residual stream: its zeros cost nothing
        for name, m in model.named_modules():
            if name.startswith("bert.encoder.layer.2.") and name.endswith("output.dense"):
                m.weight.mul_(1e-3)
        model.classifier.weight.mul_(300)  # a random model's answers barely move otherwise
    bar = []
    w = Recording(tok, df, Untouchable(), ["negative", "positive"], scratch=tmp_path,
                  progress=lambda f, m: bar.append((f, m)))
    spec = PruneSpec(sparsity=0.5, criterion="sparsegpt", refit="on", allocation="measured")
    cm = compress(model, Recipe((spec,)), w)
    assert set(w.seen) <= set(df["text"]) and len(set(w.seen)) > 128, \
        "the blocks are scored on train texts after the calibration ones, and nothing else is read"
    share = {}
    for i in range(3):
        ws = [p for n, p in cm.module.named_parameters()
              if n.startswith(f"bert.encoder.layer.{i}.") and n.endswith(".weight") and p.dim() == 2]
        share[i] = sum(int((p == 0).sum()) for p in ws) / sum(p.numel() for p in ws)
    assert share[2] > 0.6 and min(share[0], share[1]) < 0.5, share
    assert cm.info["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert "by their measured cost" in cm.notes[-1] and "change the answers most" in spec.describe()
    assert any(m.startswith("measuring block 1 of 3") for _, m in bar)
    for bad, word in [(dict(criterion="wanda"), "criterion=sparsegpt or obc"),
                      (dict(criterion="sparsegpt", pattern="2:4"), "unstructured")]:
        with pytest.raises(SpecError, match=word):
            PruneSpec(**{"sparsity": 0.5, "allocation": "measured", **bad})
