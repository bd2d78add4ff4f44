"""Safe intake of pictures from people: the bot's uploads and the CLI's files.

Checks what a file declares before reading it, decodes with the four allowed decoders only,
within the pixel limit, and keeps a re-encoded PNG copy; the bytes given are dropped.

May import: the standard library, Pillow and `generator.contract`; never torch, numpy or
discord (import-linter checks it), so the bot's process can use it.
"""
