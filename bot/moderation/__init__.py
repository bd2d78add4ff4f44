"""Moderation, without Discord: the terms a prompt may not say (`terms`, matched the way AutoMod
means them and through what evaders type) and the rules that bring them together for a server
(`rules`: the operator's `[moderation]` terms, the server's own, and its AutoMod keyword rules,
which the front end keeps current).

May import the shared modules and generator's contract; never discord or another part of `bot`.
"""
