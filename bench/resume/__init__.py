"""Runs that survive what clusters do: stable run directories, signals turned into resumable
checkpoints, exact resume, and what a start does with what an earlier start left behind."""
