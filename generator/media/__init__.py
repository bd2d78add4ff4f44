"""Pictures made for people to watch: the time-lapse animation (WebP, or GIF where this Pillow
cannot write WebP), encoded by the worker and the CLI and fitted to an upload limit by the bot.

May import: the standard library, Pillow and `generator.contract`; never torch, numpy or
discord (import-linter checks it), so the bot's process can use it.
"""
