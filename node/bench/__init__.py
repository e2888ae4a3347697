"""``govnode bench``: speed figures printed beside the physical limit measured in the
same run, as a ratio (DESIGN §10)."""
