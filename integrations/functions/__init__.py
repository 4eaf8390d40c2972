"""JavaScript functions (Segment's contract) in embedded V8: the runtime, its `fetch`, and settings declarations.

The model is integrations.models.Function; the destination vendor is integrations/vendors/function.py, the
source kind integrations/webhooks/function.py, and insert functions run in insert.py here (before the vendor).
"""
