"""``python -m generator.worker``: the worker as the bot's child process (see `child`)."""

from generator.worker.child import main
from generator.worker.process import leave

leave(main())
