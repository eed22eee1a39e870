"""bnbook: the plumbing behind the executable book *Batch Normalization, Tested*.

One module per kind of work, so that a function's job says where it lives:

* ``bnbook.data``: load Fashion-MNIST offline, verified byte for byte; the input pipelines.
* ``bnbook.models``: create or change models (the MLP, noisy BN, initializers, PreciseBN).
* ``bnbook.training``: run one model once (seed, compile, fit, step-level records).
* ``bnbook.sweeps``: run many variants over seeds, side by side in threads.
* ``bnbook.measure``: measure a model without changing it (accuracy, layer inputs, gradients).
* ``bnbook.timing``: stopwatches (interleaved rounds, per-step times).
* ``bnbook.memory``: keep a kernel's memory near what it holds (C heaps).
* ``bnbook.stats``: effects with 95 % intervals and the book's one verdict rule.
* ``bnbook.reference``: batch normalization from scratch in NumPy.
* ``bnbook.plotting``: the book's figure style and shared plots.
* ``bnbook.notebook``: a chapter's set-up call, the glue of verdicts, showing source.

Dependencies run one way: data, stats, reference, plotting and memory import
none of the others; measure imports data; models imports measure; training
imports nothing of the book's; sweeps imports data, measure, memory, models and
training; notebook imports stats and, when called, memory, plotting and
training.
"""

__version__ = "0.2.0"
