"""The legacy flat-file world: reading, mapping, importing, mirroring and archiving the files.

An app of its own: reports never imports it. The mirror hears of changed reports through
`reports.signals.report_changed` (connected in LegacyConfig.ready); taking "legacy" out of
INSTALLED_APPS turns the mirror, `backfill_json` and `archive_legacy_json` off.
"""
