"""Judge a trained model: precision, recall, the confusion matrix and an honest R²."""
