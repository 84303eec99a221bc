"""The claims ledger: published claims as records, re-run through the bench, judged by a rule
fixed before the run (``verdict``), and written up as the ledger (``REPRODUCTIONS.md``)."""
