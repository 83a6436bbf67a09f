"""Who reads the feeds: subscribers by feed service, direct pollers, and how they poll.

Two sources, one report. `feedsvc serve` with ``audience.enabled`` counts
the polls it answers (`recorder.py`, hooked in by `app.py`) into a store
beside the output folder (`store.py`); `feedsvc audience ACCESS_LOG…` reads
nginx's access logs (`logs.py`). Both fold their polls into the same
per-minute `model.Tally` rows (`tally.py`, reading User-Agents with
`agents.py` and the patterns in `agents.toml`), and `report.compute` alone
makes the figures, which `page.py` writes as HTML with SVG charts
(`charts.py`), JSON or text.
"""
