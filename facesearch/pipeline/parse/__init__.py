"""Region parsers behind one interface (`base.Parser`: the 7 region masks of an aligned face),
one file per backend, chosen by name."""
