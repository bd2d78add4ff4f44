"""Loading models: the safe checkpoint reader, the CLIP and dVAE loaders, the multilingual text
encoders, and the tiny random models the tests and benchmarks write in the real formats.

May import: `generator.contract`, torch and the model libraries; never the method, the worker
or the CLI.
"""
