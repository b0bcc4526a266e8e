"""The method registry. A new method is one module and one ``@register``;
importing a family module here is all it takes to appear in ``--list``."""
from methods.base import METHODS, Method, MethodOutput  # noqa: F401
from methods import standard, generalization, levi, ablations, soups  # noqa: F401,E402
from methods import l2sp, surgical, levi_batchensemble  # noqa: F401,E402
