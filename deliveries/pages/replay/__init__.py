"""Replay: send stored events again to chosen destinations, from a Debugger selection or a filter.

The form counts first (a dry run, bounded so it answers fast on millions of events), then a task walks the
matching events in id order, 500 at a time: an event a destination already has is skipped (unless asked), one
in flight is left alone, a failed, retrying, pending or filtered delivery is queued again with a fresh retry
deadline, and a missing one is created. The destination's filter applies, as Segment applies it on replay.
The Replay row keeps the counts; the progress page polls them until every queued delivery has finished.

The rooms: selection.py (which events), dry_run.py (the counts), form.py, task.py (queuing the deliveries),
progress.py (where a replay stands) and views.py (the admin pages).
"""
