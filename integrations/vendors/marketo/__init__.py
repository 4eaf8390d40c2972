"""Marketo Engage: identify events upsert leads, mapped track events become custom activities (REST API).

Wire contract: vendor-contracts.md §2. vendor.py is the vendor; rest.py the REST client (token, envelope, 413
splitting); errors.py what the error codes mean; config.py the settings.
"""
