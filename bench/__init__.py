"""`make bench`: minion's cost measured against the AWS calls it cannot avoid.

Every figure is a ratio of two things measured in the same run against the same backend
(moto's server on loopback, in a process of its own), so that this machine's speed cancels
out. `python -m bench` prints a human-readable table, then one `name: value` line per figure;
`python -m bench --quick` does the same at a tiny scale (the smoke test). Never shipped.
"""
