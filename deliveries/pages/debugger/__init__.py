"""The Debugger page: its queries (query.py: filters, search, keyset pages, the live feed) and its views."""
