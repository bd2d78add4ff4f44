"""One cog per feature: drawing, the queue, admin settings, help."""
