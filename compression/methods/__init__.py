"""One module per method family; each exposes plain functions ``(model, spec, workload) -> CompressedModel``.

All of them pick their layers through the model's family adapter (families.py): ``family(model).linears(model)``
is the Linear layers inside the blocks, where compression is safe by default (pruning every Linear globally
wipes out the pooler and the classifier and collapses accuracy to the majority class). The catalogue
(registry.py) names each function as ``"module:function"`` and imports it on first use, so listing methods
never imports torch.
"""
