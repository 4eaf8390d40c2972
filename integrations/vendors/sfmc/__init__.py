"""Salesforce Marketing Cloud: contacts into Journey Builder journeys (journey.py), rows into data extensions
(data_extension.py); base.py holds what both share."""
