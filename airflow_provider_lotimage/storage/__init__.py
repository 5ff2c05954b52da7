"""Where pictures are stored: names and sidecars, atomic writes, and the checked download."""
