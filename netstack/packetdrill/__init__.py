"""A packetdrill runner for the native stack: scripts of socket calls, packets
injected (`<`) and packets expected (`>`), run on a virtual clock against the
sans-IO core (no device, no namespace, no root).

    python -m netstack.packetdrill [--json FILE] [--strict] [-v] SCRIPT.pkt...
"""

from .engine import RELAXATIONS, Result, run_script, run_text

__all__ = ["run_script", "run_text", "Result", "RELAXATIONS"]
