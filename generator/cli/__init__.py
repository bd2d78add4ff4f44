"""The `pseudo-dalle` command line (`commands`) and what only it uses (`diagnostics` for
`doctor`). The only part of `generator` that talks to a terminal.

May import: every other part of `generator`, inside the command that needs it, so that
`pseudo-dalle --help` and the bot's own commands load no torch.
"""
