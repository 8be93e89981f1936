"""``tradepipe run``: every stage in one process, with embedded stand-ins (see :mod:`.pipeline`)."""
