"""The command line: one module per command, their wiring and text rendering.

The only place argparse is used.
"""
