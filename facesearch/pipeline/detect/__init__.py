"""Face detectors behind one interface (`base.Detector`), one file per backend, chosen by name."""
