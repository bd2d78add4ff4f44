"""The Discord front end: the `commands.Bot` subclass, one cog per feature, the persistent card
buttons, permission checks, the job cards and the presenter that keeps them current.

Cogs and views talk to the `discord.Interaction`; what they ask of the jobs goes to the desk as
plain values (`bot.jobs.desk`). May import `bot.jobs`, `bot.workers` (for what a worker is) and
the shared modules; never `bot.ops`."""
