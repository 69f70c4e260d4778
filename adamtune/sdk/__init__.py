"""The SDK a user's training script imports: ``trial = adamtune.trial()``.

See docs/programs.md. Importing it loads no torch; ``Trial.build_optimizer`` does.
"""

from adamtune.sdk.channel import WorkerLost
from adamtune.sdk.config import ConfigError
from adamtune.sdk.trial import Pruned, Trial, trial

__all__ = ["ConfigError", "Pruned", "Trial", "WorkerLost", "trial"]
