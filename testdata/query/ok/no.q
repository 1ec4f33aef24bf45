no:level
