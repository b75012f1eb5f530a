"""What the applications write to disk, shared by all of them: run folders and results files (JSON + CSV)."""
