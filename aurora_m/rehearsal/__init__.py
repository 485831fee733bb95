"""Rehearsing a real recipe in miniature before a cluster run (``aurora-m rehearse``), against the Hub or the
recorded Hub (:mod:`.hub`, offline)."""
