"""Learning from the user's own data on the edge box's CPU (needs the ``torch`` extra)."""
