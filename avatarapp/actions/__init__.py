"""Functions that change state (``do_*``), shared by both doors: the pages and the JSON API.

They own every rule a request must pass (consent, size, rate limits, quota,
ownership) and raise an ActionError carrying the error code, HTTP status and a
localised message; the doors only translate that into JSON or a page.
"""
