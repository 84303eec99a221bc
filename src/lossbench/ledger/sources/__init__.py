"""The claim records, one module per source; importing this package registers them all."""

from lossbench.ledger.sources import exact_paper, su  # noqa: F401
from lossbench.ledger.sources import flooding  # noqa: F401
from lossbench.ledger.sources import longtail  # noqa: F401
from lossbench.ledger.sources import multilabel  # noqa: F401
from lossbench.ledger.sources import weissi  # noqa: F401
from lossbench.ledger.sources import part2  # noqa: F401
