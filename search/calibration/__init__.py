"""The cut-off that means something: at each rebuild the worker calibrates on the library itself
(each label with enough images is a query whose right answers are that label's images) and
records, per kind of query, the score at which precision falls below a level. ``precision``
holds the arithmetic (numpy only: importable without Django), ``library`` the worker's
calibration, ``cutoffs`` what searches (``cutoffs.cutoff``) and the status pages read."""
