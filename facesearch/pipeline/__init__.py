"""Media -> faces, in the order a photo travels: `sources` (media items) -> `images` (bounded
decoding) -> `detect` (boxes, scores, 5 landmarks) -> `alignment` (5-point similarity transform
to the 112x96 crop) -> `parse` (the 7 region masks) -> `prepare` (all of the above for one
photo) -> `describer` (threads prepare, the models describe in batches) -> `faces.Face`."""
