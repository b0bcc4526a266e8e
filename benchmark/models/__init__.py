"""Networks: backbones exposing their intermediate layers, small task models,
heads and adapting layers. Each backbone's module registers it in
``BACKBONES`` (``benchmark.models.backbone``); ``run_benchmark.py --list``
prints them."""
from benchmark.models.backbone import (BACKBONES, Backbone,  # noqa: F401
                                       check_safetensors, weights_digest)
# Registration order is the order ``--list`` prints.
from benchmark.models import tabular, bert, t5, vit, efficientnet  # noqa: F401,E402
