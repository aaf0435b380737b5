"""The legacy flat-file reports: reading, mapping, importing and mirroring them.

Kept free of imports so that `reports.services` can import the mirror hook without a cycle;
import the modules themselves (`reports.legacy.files`, `.mapping`, `.services`, ...).
"""
