"""Loading models: the safe checkpoint reader, the CLIP and dVAE loaders and the multilingual text
encoders. (The tiny random models the tests and benchmarks write in the real formats are in
tests/synthetic.py, out of the wheel.)

May import: `generator.contract`, torch and the model libraries; never the method, the worker
or the CLI.
"""
