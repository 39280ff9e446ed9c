"""Report figures and tables from a run's results (rule `figures`; no training, no inference).

Reads the two training histories, the half / full classification metrics and the transfer
check, and writes: training_curves.png, classification.csv (half and full side by side, with a
`identical` column), classification.png and transfer_check.csv. Plain pandas / matplotlib on
small files; runs in seconds.
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

SCALARS = ("top1_accuracy", "top5_accuracy", "macro_precision", "macro_recall", "macro_f1",
           "micro_precision", "micro_recall", "micro_f1")


def training_curves(half_csv, full_csv, out_png):
    """Half: loss and accuracy (train / validation) and learning rate; full: reconstruction loss."""
    half = pd.read_csv(half_csv)
    full = pd.read_csv(full_csv)
    lr_name = next((name for name in ("learning_rate", "lr") if name in half), None)
    panels = 4 if lr_name else 3
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 4))

    def plot(ax, frame, names, title, ylabel):
        x = frame["epoch"] + 1 if "epoch" in frame else range(1, len(frame) + 1)
        drawn = False
        for name in names:
            if name in frame:
                ax.plot(x, frame[name], marker="o", ms=3, label=name)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)

    accuracy = [name for name in half if name.endswith("accuracy") and "top5" not in name]
    plot(axes[0], half, ("loss", "val_loss"), "half model: cross-entropy", "loss")
    plot(axes[1], half, accuracy or ("accuracy", "val_accuracy"), "half model: accuracy",
         "accuracy")
    if lr_name:
        plot(axes[2], half, (lr_name,), "half model: learning rate", "learning rate")
        axes[2].set_yscale("log")
    plot(axes[-1], full, ("loss", "val_loss"), "full model: reconstruction (MSE)", "loss")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def classification(half_json, full_json, compare_json, out_csv, out_png):
    half = json.loads(Path(half_json).read_text())
    full = json.loads(Path(full_json).read_text())
    compare = json.loads(Path(compare_json).read_text())
    keys = [k for k in SCALARS if k in half or k in full]
    keys += [k for k in ("num_images", "num_classes") if k in half or k in full]
    table = pd.DataFrame(dtype=object, data={
        "metric": keys,
        "half": [half.get(k) for k in keys],
        "full": [full.get(k) for k in keys],
    })
    table["identical"] = [half.get(k) == full.get(k) for k in keys]
    table.to_csv(out_csv, index=False)

    scores = table[table["metric"].isin(SCALARS)]
    fig, ax = plt.subplots(figsize=(10, 4))
    positions = range(len(scores))
    width = 0.4
    ax.bar([p - width / 2 for p in positions], scores["half"], width, label="half model")
    ax.bar([p + width / 2 for p in positions], scores["full"], width, label="full model")
    ax.set_xticks(list(positions))
    ax.set_xticklabels(scores["metric"], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    identical = compare.get("identical", bool(table["identical"].all()))
    ax.set_title("classification on the test split: half vs full "
                 + ("(identical)" if identical else "(DIFFERENT)"))
    ax.legend(loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)


def flatten(prefix, value, rows):
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), item, rows)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for i, item in enumerate(value):
            flatten(f"{prefix}[{i}]", item, rows)
    else:
        rows.append({"check": prefix,
                     "value": json.dumps(value) if isinstance(value, (list, dict)) else value})


def transfer_table(check_jsons, out_csv):
    """Every entry of the transfer checks (after training and the workflow's own check)."""
    rows = []
    for label, path in check_jsons.items():
        flatten(label, json.loads(Path(path).read_text()), rows)
    pd.DataFrame(rows, columns=["check", "value"]).to_csv(out_csv, index=False)


def main(smk):
    with open(smk.log[0], "w") as log:
        sys.stdout = sys.stderr = log
        training_curves(smk.input.half_history, smk.input.full_history,
                        smk.output.training_curves)
        classification(smk.input.half_metrics, smk.input.full_metrics, smk.input.compare,
                       smk.output.classification_csv, smk.output.classification_png)
        transfer_table({"train_full": smk.input.transfer_train,
                        "check_transfer": smk.input.transfer_check},
                       smk.output.transfer_csv)
        print("report figures written:", *smk.output, sep="\n  ")


main(snakemake)  # noqa: F821  (injected by Snakemake's script directive)
