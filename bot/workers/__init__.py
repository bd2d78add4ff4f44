"""How the scheduler reaches its workers: the transport it talks to (`transport`), one worker
process on this host over stdin and stdout (`local`, the default), or any number of workers on
any hosts through Redis Streams (`redis_streams`).

May import the shared modules and generator's contract; never discord or another part of `bot`."""
