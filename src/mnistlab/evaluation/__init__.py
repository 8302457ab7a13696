"""Judge a trained model: precision, recall, the confusion matrix and an honest R²
(``evaluate``), on the splits the run had (``splits``); how sure it should be (``calibration``:
ECE, NLL, temperature scaling fitted on the validation part); an interval on every accuracy
(``intervals``: Wilson); and the metrics a compare ranks and tests on (``paired``). Inside
the network (``inside``: layers, attributions, first-layer templates, embedding, on the run's
own weights) and where it breaks (``robustness``: seeded corruptions, FGSM, the card)."""
