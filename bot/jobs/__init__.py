"""What a drawing is and what happens to it, without Discord: the desk turns a member's request,
the server's settings and the operator's limits into one frozen `JobSpec` (`spec`), the store
keeps jobs and server settings in SQLite (all SQL), the scheduler decides which job is drawn
where, job events tell the front end, retention forgets what is no longer needed.

May import `bot.workers` and the shared modules; never discord, `bot.front` or `bot.ops`."""
