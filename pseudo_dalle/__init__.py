"""The ``pseudo-dalle`` console command, above both halves: the engine's commands (`generator.cli`)
and the bot's (`bot.ops`), and ``doctor``, which reports on both. Neither half imports it."""
