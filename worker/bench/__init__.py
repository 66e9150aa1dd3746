"""`make bench`: the budgets of DESIGN.md, measured side by side in one run on this machine."""
