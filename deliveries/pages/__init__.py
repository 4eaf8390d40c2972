"""The marketer's admin pages: one module (or small package) per page, their templates under
templates/admin/deliveries/<page>/ and their scripts and styles as static/deliveries/<page>.js|.css.

dashboard (the admin index), debugger, schema, tester (Event Tester), event_delivery, replay; the event, delivery
and source admins (events, deliveries, sources); what every page shares (base, display, static/deliveries/pages.js)
and the Marketer role (roles). Pages read the engine's and ingest's own functions; neither imports a page.
"""
