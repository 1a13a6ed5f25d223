"""Side-by-side benchmark of fastpad and what people use today: the code behind
``python -m fastpad bench`` (``fastpad/__main__.py``) and the ``benchmarks/`` suites.

One module per job, each importing only those above it (tests/test_import_cycles.py checks that
no module of fastpad imports, even lazily, one that imports it back):

- `workloads`: length distributions, the batches in every input form, texts, the tokenizer;
- `paths`: the competing ways to pad a batch, and the output check;
- `measure`: interleaved timing, peak memory, page faults, what counts as noisy (and how a time
  is written);
- `progress`: the tqdm progress bar;
- `patch`: the patch_transformers end-to-end section (measured and tabled);
- `e2e`: the end-to-end section, count batches against token batches (measured and tabled);
- `run`: the run itself, cell by cell, into a JSON-ready report;
- `report`: the Markdown tables and the JSON file; `plot`: the PNG, every panel of it.

Only ``python -m fastpad bench`` and the benchmarks import this package; ``import fastpad``
does not.
"""
