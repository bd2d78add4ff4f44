"""pseudo-dalle's engine: CLIP-guided optimisation of DALL-E's dVAE decoder.

Importing this package is cheap: torch is only imported by the modules that need it.
"""

from __future__ import annotations

__version__ = "0.2.0"
