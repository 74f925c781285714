"""The browser interface: the only part of the studio that imports gradio.

`layout.build_app()` assembles the tabs; each `*_tab.py` builds one tab and wires its events.
`session.py`, `actions.py`, `layers.py` and `monitor_view.py` stay gradio-free so they can be
tested (and reused by the API) without a browser.
"""
