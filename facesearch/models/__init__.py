"""The networks facesearch runs, one file per model, with their weights and model cards
(`weights/`): `descriptor` (the 364-dim master-vector network of the patent, ours), `mediapipe`
(the detectors, face mesh and person segmenter that ship inside mediapipe)."""
