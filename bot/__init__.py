"""pseudo-dalle's Discord bot. Its process never imports torch: drawing happens in worker
processes (`generator.worker`), reached through the typed protocol in `generator.contract`.

Its parts, each a folder, stand in layers (import-linter checks them in `make lint`):

- `ops`: start-up and operations: the launcher that builds and wires the parts, the heartbeat
  behind Docker's health check, metrics, the doctor's lines, the message catalogs' upkeep.
- `front`: everything that talks to Discord: the bot class, cogs, buttons, checks, job cards
  and the presenter that keeps them current.
- `jobs`: what a drawing is and what happens to it, without Discord: the desk that turns a
  member's request into a `JobSpec`, the store (all SQL), the scheduler, job events, retention.
- `workers`: how the scheduler reaches workers: one child process, or any number through Redis.

Each may import the parts below it, never those above; `jobs` and `workers` never import
discord. Shared by all: `config` (the TOML file), `limits` (every limit, declared once),
`i18n` (the bot's words) and `tasks` (owned background tasks).
"""
