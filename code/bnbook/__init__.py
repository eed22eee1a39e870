"""bnbook: the plumbing behind the executable book *Batch Normalization, Tested*."""

__version__ = "0.1.0"
