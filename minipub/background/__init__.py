"""Background publishing, split by job.

``tracker`` settles what was submitted (flush, stats, ``on_error``); ``jobs`` is the one interface
between the ``Publisher``'s workers and where their jobs come from (``JobQueue``); ``memory`` is the
in-memory queue; ``rows`` and ``store`` are the SQLite outbox (schema, columns, rows; the file);
``pump`` feeds the workers from it; ``gate`` holds them back after a refused key; ``publisher`` ties
them together. ``import minipub`` imports none of it; ``minipub.publisher`` and ``minipub.outbox``
re-export the public names.
"""
