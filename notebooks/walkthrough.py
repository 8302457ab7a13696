# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # Deep learning on MNIST, start to finish, with mnistlab
#
# This walkthrough follows the classic "discover the power of deep learning" exercise: classify
# handwritten digits 0-9 with a small fully connected network. Every step of that exercise is one
# call here: load the data, look at it, train the exercise's network on raw pixels (and watch it
# fail), standardize the inputs (and watch it work), try a few improvements, and measure the
# result honestly.
#
# It is a plain Python script in "percent" format: run it top to bottom with
# `python notebooks/walkthrough.py`, or open it as a notebook with Jupytext / VS Code.
# Set `MNISTLAB_WALKTHROUGH_QUICK=1` for a one-minute pass (bundled sample, one epoch), and
# `MNISTLAB_WALKTHROUGH_OUT=DIR` to choose where figures and run folders go.

# %%
import dataclasses
import math
import os
from pathlib import Path

import mnistlab
from mnistlab import Recipe, datasets, fit

QUICK = os.environ.get("MNISTLAB_WALKTHROUGH_QUICK") == "1"
OUT = Path(os.environ.get("MNISTLAB_WALKTHROUGH_OUT", "walkthrough-out"))
RUNS = OUT / "runs"
EPOCHS = 1 if QUICK else 5  # 5 is the exercise's own choice
# The "try to beat this" variants train on this many images in quick mode (None = all).
VARIANT_SLICE = 4000 if QUICK else None
print(f"quick mode: {QUICK}; outputs in {OUT.resolve()}")

# %% [markdown]
# ## 1. Load the data
#
# `datasets.load()` gives the full MNIST (60,000 training and 10,000 test images) when it is on
# this machine or can be downloaded, and otherwise falls back to a small sample that ships with
# mnistlab (and says so in `note`). Images come as `uint8` arrays of shape (N, 28, 28), labels as
# integers - no one-hot encoding or flattening needed; the trainer does that.

# %%
ds = datasets.load("mnist-sample" if QUICK else None)
print(f"dataset {ds.name}: x_train {ds.x_train.shape} {ds.x_train.dtype}, "
      f"x_test {ds.x_test.shape}, classes {list(ds.class_names)}")
if ds.note:
    print("note:", ds.note)

# %% [markdown]
# ## 2. How does MNIST look?
#
# Two questions matter before training anything: are the classes balanced (if one digit were
# rare, accuracy alone would hide how badly it is recognized), and what range do the inputs
# span (a network's first layer multiplies them directly)?

# %%
summary = mnistlab.explore(ds)
mnistlab.explore.print_summary(summary)
figures = mnistlab.explore.write_report(summary, OUT / "explore")
print("figures:", ", ".join(p.name for p in figures.values()))

pixels = summary["pixels"]["train"]
balance = summary["classes"]["train"]
print(f"class balance: the largest class is {balance['imbalance_ratio']:.2f}x the smallest")
print(f"pixel mean {pixels['mean']:.2f}, variance {pixels['variance']:.1f}, std {pixels['std']:.2f}, "
      f"{pixels['zero_share']:.0%} of all pixels are exactly 0")

# %% [markdown]
# The classes are close to uniform, so accuracy is a fair headline number. The pixels are not
# "nice" inputs: mostly 0 with strokes up to 255, a standard deviation near 80. Keep that
# number in mind.
#
# ## 3. The exercise's network, on raw pixels
#
# The network: 784 inputs, three hidden Dense layers of 128 ReLU units, a 10-way softmax,
# categorical cross-entropy, SGD (learning rate 0.01, decay 1e-6, Nesterov momentum 0.9),
# batches of 32, the last 30 % of the training set held out for validation. That is exactly
# what `Recipe()` holds by default. The exercise's first attempt feeds the raw 0-255 pixels,
# which is `normalize="none"`.

# %%
recipe = Recipe(epochs=EPOCHS)
print({k: getattr(recipe, k) for k in (
    "hidden", "activation", "optimizer", "learning_rate", "decay", "momentum", "nesterov",
    "batch_size", "epochs", "validation_split", "normalize")})

results = {}  # name -> test accuracy, for the comparison at the end


def report(name, run):
    """Print a run's history and test numbers; remember its test accuracy."""
    def num(v, fmt):  # a diverged loss is NaN in the history and null (None) in metrics.json
        return "nan" if v is None or not math.isfinite(v) else format(v, fmt)

    for row in run.history:
        print(f"  epoch {row['epoch']}: loss {num(row['loss'], '.4g')}, accuracy "
              f"{row['accuracy']:.4f}, val_loss {num(row['val_loss'], '.4g')}, val_accuracy "
              f"{num(row['val_accuracy'], '.4f')}")
    test = run.metrics["test"]
    print(f"==> {name}: test accuracy {test['accuracy']:.4f}, test loss {num(test['loss'], '.4f')}")
    results[name] = test["accuracy"]


raw = fit(recipe.replace(name="raw-pixels", normalize="none"), ds, out=RUNS / "raw-pixels", quiet=True)
report("raw pixels", raw)
for warning in raw.warnings:
    print("health check:", warning)

# %% [markdown]
# That is a failure: the training loss explodes (or goes NaN) and the accuracy sits at the
# 10 % a coin with ten sides would get. A loss of ln(10) = 2.30 is exactly what a network that
# gives every class 1/10 scores, so the model has learned nothing at all. mnistlab's health
# check notices and names the cause. The exercise suggests trying a smaller learning rate first:

# %%
raw_small_lr = fit(recipe.replace(name="raw-pixels-lr0.001", normalize="none", learning_rate=0.001),
                   ds, out=RUNS / "raw-pixels-lr0.001", quiet=True)
report("raw pixels, lr 0.001", raw_small_lr)

# %% [markdown]
# A smaller step can make raw pixels trainable, but it treats the symptom: inputs of size ~80
# make every gradient of the first layer ~80 times larger than the optimizer's defaults expect.
# The real fix is to give the network inputs of mean 0 and standard deviation 1, using the
# statistics of the training part only (the test set must stay unseen).
#
# ## 4. Standardize, and train again

# %%
standard = fit(recipe.replace(name="standardized"), ds, out=RUNS / "standardized", quiet=True)
x_std = standard.preprocess(ds.x_train[:2000])
print(f"the run standardizes with mean {standard.mean:.2f} and std {standard.std:.2f}; "
      f"after it a batch of inputs has mean {x_std.mean():.3f} and std {x_std.std():.3f}")
report("standardized", standard)
print("health check warnings:", standard.warnings or "none")

# %% [markdown]
# Same network, same optimizer, same seed: only the input scale changed, and the accuracy goes
# from chance to well above 90 %.
#
# ## 5. Try to beat it
#
# The exercise lists four ideas: another optimizer, regularization, dropout and batch
# normalization. Each is one field of the recipe. (Dropout and batch normalization train on the
# PyTorch engine; the plain network runs on mnistlab's NumPy engine.) In quick mode these train
# on a slice of the data, so compare them with each other rather than with the run above.

# %%
train_part = ds if VARIANT_SLICE is None else dataclasses.replace(
    ds, x_train=ds.x_train[:VARIANT_SLICE], y_train=ds.y_train[:VARIANT_SLICE])
variants = {
    "baseline (sgd)": recipe,
    "adam, lr 0.001": recipe.replace(optimizer="adam", learning_rate=0.001),
    "l2 1e-4": recipe.replace(l2=1e-4),
    "dropout 0.2": recipe.replace(dropout=0.2),
    "batch norm": recipe.replace(batch_norm=True),
}
variant_runs = {}
for name, r in variants.items():
    slug = name.split(",")[0].split(" (")[0].replace(" ", "-")
    variant_runs[name] = fit(r.replace(name=slug), train_part, out=RUNS / f"variant-{slug}", quiet=True)
    report(f"variant {name}", variant_runs[name])

# %% [markdown]
# ## 6. Metrics: precision, recall, and R² "if it makes sense"
#
# Accuracy is one number; precision and recall per digit tell where the mistakes are (a low
# recall for 8 means many 8s are called something else; a low precision means other digits are
# often called 8). The confusion matrix and the most confident mistakes are written as figures.

# %%
best_name = max(variant_runs, key=lambda n: variant_runs[n].metrics["test"]["accuracy"])
candidates = {"standardized": standard, f"variant {best_name}": variant_runs[best_name]}
chosen = max(candidates, key=lambda n: candidates[n].metrics["test"]["accuracy"])
print(f"evaluating the best run so far: {chosen}")
metrics = mnistlab.evaluate(candidates[chosen].path, split="test", out=OUT / "evaluation")
mnistlab.evaluate.print_evaluation(metrics)

# %% [markdown]
# About R²: it measures how much of the variance of a *number* a prediction explains. Digit
# labels are names that happen to be written as numbers - a 7 is not "more" than a 3 - so R² on
# the predicted labels would reward calling a 5 a 4 over calling it a 0, which means nothing.
# What does make sense is R² of the predicted probabilities against the one-hot targets
# (1 minus the Brier score over the targets' variance): 1 for confident, correct predictions,
# 0 for no better than guessing the class frequencies.

# %%
r2 = metrics["r2"]
print(f"R² of probabilities vs one-hot targets: {r2['probabilities_vs_onehot']:.4f} "
      f"(Brier score {r2['brier']:.4f})")
macro = metrics["macro_avg"]
print(f"macro precision {macro['precision']:.4f}, macro recall {macro['recall']:.4f}")

# %% [markdown]
# ## 7. Your own handwriting
#
# A trained run can read a photo of a digit on paper: `predict` prepares it the way MNIST's
# images were made (bright ink on black, scaled into 20x20, centred by mass). Here we fake such
# a photo from a test digit: enlarged and printed dark on light paper.

# %%
from PIL import Image  # noqa: E402  (only this cell needs Pillow directly)

digit, label = ds.x_test[0], int(ds.y_test[0])
photo = Image.fromarray(255 - digit).resize((200, 200), Image.Resampling.BICUBIC)
photo_path = OUT / "my_digit.png"
photo.save(photo_path)
(answer,) = mnistlab.predict(candidates[chosen], [photo_path], top=3)
print(f"true digit {label}; the model says {answer.label} with probability {answer.probability:.3f}; "
      f"top 3: {[(name, round(p, 3)) for _, name, p in answer.top]}")

# %% [markdown]
# ## Summary

# %%
width = max(map(len, results))
for name, acc in results.items():
    print(f"{name:<{width}}  test accuracy {acc:.4f}")
failure, success = results["raw pixels"], results["standardized"]
print(f"raw pixels {failure:.1%} -> standardized {success:.1%}: scale your inputs.")
