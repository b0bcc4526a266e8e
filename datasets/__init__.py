"""The benchmark registry: one module per benchmark, each registering itself.

(Named ``datasets`` as the user asked; this project does not use, and must not
install, Hugging Face's package of the same name.)"""
from datasets.base import DATASETS, DatasetSpec  # noqa: F401
from datasets import tabular, synthetic_spurious, movielens, amazon  # noqa: F401,E402
from datasets import fashion_mnist, vision  # noqa: F401,E402
