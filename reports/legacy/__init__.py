"""The legacy flat-file reports: reading, mapping, importing and mirroring them.

Import the modules themselves (`reports.legacy.files`, `.mapping`, `.services`, ...). The
mirror hears of changed reports through `reports.signals.report_changed`.
"""
