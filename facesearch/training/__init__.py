"""Training and measuring the descriptor: `data` (CelebA, UTKFace), `train` (the recipe and its
loops), `dlib_anchor` (dlib: evaluation anchor and distillation teacher), `evaluate` and
`text_eval`. Nothing on the search path imports this package."""
