"""The Event Tester: paste or build an event, see how a destination would route, map and send it (dry run), or
send it for real as a test and read every HTTP exchange of its lifecycle, one page per exchange.

Unlike Segment's tester, which skips filters and shows the partner's answer only, this runs the real pipeline:
the Tracking API's normalisation, routing, the destination's mapping and its vendor's requests (token calls
included). A test send is an Event (status "test") and a Delivery (is_test) that the normal drain never claims
(no next_attempt_at): a task sends it once and records it like any other, never retried and kept out of rollups.
"""
