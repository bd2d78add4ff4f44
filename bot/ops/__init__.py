"""Start-up and operations: the launcher (config in, parts built and wired, run, stopped in
order), the heartbeat file behind Docker's health check, Prometheus metrics, the bot's lines of
`pseudo-dalle doctor`, and the message catalogs' upkeep.

May import every other part of `bot`, and generator's contract, intake and media."""
