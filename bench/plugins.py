"""Imports the pruner packages outside the core (sls/, baselines/) so that they register.

The core (registry, pruning contract, models, train) never imports them; only the orchestration
(run, sweep, cli) imports this module.
"""

import sls.pruner  # noqa: E402, F401
