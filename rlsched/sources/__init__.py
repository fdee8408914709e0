"""Workload sources: loaders for files and generators, resolved from SPEC strings.

See :mod:`rlsched.sources.specs` for the SPEC syntax.
"""
