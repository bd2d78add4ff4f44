"""pseudo-dalle's Discord front end. This process never imports torch: drawing happens in a
worker process (`generator.worker`) reached through `generator.contract.protocol`."""
