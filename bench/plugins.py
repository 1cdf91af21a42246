"""Imports the pruner packages outside the core (sls/, baselines/) so that they register.

The core (registry, pruning contract, models, train) never imports them; only the orchestration
(run, sweep, cli) imports this module.
"""

import baselines.block_benefit  # noqa: E402, F401
import baselines.layerwise  # noqa: E402, F401
import baselines.pear  # noqa: E402, F401
import baselines.similarity  # noqa: E402, F401
import baselines.spa  # noqa: E402, F401
import baselines.width  # noqa: E402, F401
import sls.pruner  # noqa: E402, F401
