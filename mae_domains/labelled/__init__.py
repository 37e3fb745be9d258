"""Labelled data below the evaluation and engine floors: label lists (:mod:`.sources`) and the weighted kNN
classifier (:mod:`.knn`), used by the ``evaluate`` protocols and by the engine's online kNN."""
