"""The networks facesearch runs, one file per model, with their weights and model cards
(`weights/`): `base` (the `Embedder` interface: name, version, dim, crops -> vectors),
`descriptor` (the 364-dim master-vector network of the patent, ours, an Embedder named
"master"), `mediapipe` (the detectors, face mesh and person segmenter that ship inside
mediapipe)."""
