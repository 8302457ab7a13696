"""Peer: Keras 3 + TensorFlow, ``model.fit`` exactly as the notebook writes it."""

REQUIRES = ("keras", "tensorflow")

if __name__ == "__main__":
    import _keras

    _keras.run("tensorflow", REQUIRES)
