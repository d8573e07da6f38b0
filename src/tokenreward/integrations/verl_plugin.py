"""verl's plugin hook (entry point group `verl.plugins`): `import verl` imports this module in
every process, which registers the `tokenreward` reward manager and the `tokenreward_*` advantage estimators. verl logs a failing plugin only at DEBUG; this module
says why at WARNING first, so a broken install is visible in the training log."""

from __future__ import annotations

import logging

try:
    import tokenreward.integrations.verl  # noqa: F401  (registers on import)
except Exception as err:  # a failing plugin must not break `import verl`, but must be seen
    logging.getLogger("tokenreward").warning("tokenreward's verl plugin did not load: %s: %s", type(err).__name__, err)
    raise
