"""Routing rules: request parsing, phone numbers, the dial plan, deadline and caching.

Pure Python: nothing here imports Flask, so the rules run the same in the web app, the
command line and the tests.
"""
