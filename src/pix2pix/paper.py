"""The paper's figures (Isola et al. 2017, Tables 1-3 and 6, Figure 7) and the experiment sets
of `pix2pix reproduce` that train and score them: a data module of its own, so that the model
card (hub/card.py) can quote the paper without loading the experiment runner."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCORES = ("pixel_acc", "class_acc", "class_iou")


@dataclass(frozen=True)
class Row:
    """One line of a table: a training config (overrides of the set's preset) and the paper's
    figures for it (None where the paper has none)."""

    name: str
    overrides: dict[str, Any]
    paper: tuple[float, ...] | None = None
    seed000: tuple[float, ...] | None = None  # seed 000's reproduction of the paper's figures, where it has one


@dataclass(frozen=True)
class ExperimentSet:
    name: str
    title: str
    preset: str  # training preset the rows start from
    task: str  # photo2label: scored against the label maps; label2photo: FCN-score
    rows: tuple[Row, ...]
    metric_names: tuple[str, ...] = SCORES
    overrides: dict[str, Any] = field(default_factory=dict)  # applied to every row
    ground_truth_paper: tuple[float, ...] | None = None  # label2photo: the segmenter on real photos
    ground_truth_seed000: tuple[float, ...] | None = None
    notes: str = ""
    reduced_overrides: dict[str, Any] = field(default_factory=dict)  # after the reduced protocol's own
    val_every: int = 0  # > 0: validate every this many steps (FCN-score and colour curves) ...
    val_images: int = 0  # ... on this many val pairs

    @property
    def fcn_scored(self) -> bool:
        """Scored by the FCN-score segmenter (labels -> photo with segmentation metrics); such
        sets get the control rows. figure7 is labels -> photo scored by colour alone."""
        return self.task == "label2photo" and bool(set(self.metric_names) & set(SCORES))


L2P, P2L = "cityscapes_label2photo", "cityscapes_photo2label"
FCN_GT = (0.80, 0.26, 0.21)
LAB = ("hist_L", "hist_a", "hist_b")

SETS: dict[str, ExperimentSet] = {
    s.name: s
    for s in (
        ExperimentSet(
            "table6",
            "Table 6: Cityscapes photo -> labels, scored against the label maps",
            P2L,
            "photo2label",
            (
                Row("L1", {"objective": "l1"}, (0.86, 0.42, 0.35)),
                Row("cGAN", {"objective": "cgan"}, (0.74, 0.28, 0.22)),
                Row("L1+cGAN", {"objective": "l1+cgan"}, (0.83, 0.36, 0.29)),
            ),
        ),
        ExperimentSet(
            "table1",
            "Table 1: losses, Cityscapes labels -> photo, FCN-scores",
            L2P,
            "label2photo",
            (
                Row("L1", {"objective": "l1"}, (0.42, 0.15, 0.11), (0.60, 0.20, 0.15)),
                Row("GAN", {"objective": "gan"}, (0.22, 0.05, 0.01)),
                Row("cGAN", {"objective": "cgan"}, (0.57, 0.22, 0.16), (0.66, 0.23, 0.18)),
                Row("L1+GAN", {"objective": "l1+gan"}, (0.64, 0.20, 0.15)),
                Row("L1+cGAN", {"objective": "l1+cgan"}, (0.66, 0.23, 0.17), (0.55, 0.20, 0.14)),
            ),
            ground_truth_paper=FCN_GT,
            ground_truth_seed000=(0.76, 0.25, 0.20),
        ),
        ExperimentSet(
            "table2",
            "Table 2: U-Net vs encoder-decoder, Cityscapes labels -> photo, batch 10, FCN-scores",
            L2P,
            "label2photo",
            (
                Row("Encoder-decoder (L1)", {"objective": "l1", "skips": False}, (0.35, 0.12, 0.08)),
                Row("Encoder-decoder (L1+cGAN)", {"objective": "l1+cgan", "skips": False}, (0.29, 0.09, 0.05)),
                Row("U-Net (L1)", {"objective": "l1"}, (0.48, 0.18, 0.13)),
                Row("U-Net (L1+cGAN)", {"objective": "l1+cgan"}, (0.55, 0.20, 0.14)),
            ),
            overrides={"batch_size": 10},
        ),
        ExperimentSet(
            "table3",
            "Table 3: discriminator receptive field, Cityscapes labels -> photo, L1+cGAN, FCN-scores",
            L2P,
            "label2photo",
            tuple(
                Row(f"{rf}x{rf}", {"receptive_field": rf}, paper)
                for rf, paper in (
                    (1, (0.39, 0.15, 0.10)),
                    (16, (0.65, 0.21, 0.17)),
                    (70, (0.66, 0.23, 0.17)),
                    (286, (0.42, 0.16, 0.11)),
                )
            ),
        ),
        ExperimentSet(
            "figure7",
            "Figure 7: histogram intersection of output colour distributions with the real photos "
            "(Lab), Cityscapes labels -> photo",
            L2P,
            "label2photo",
            (
                Row("L1", {"objective": "l1"}, (0.81, 0.69, 0.70)),
                Row("cGAN", {"objective": "cgan"}, (0.87, 0.74, 0.84)),
                Row("L1+cGAN", {"objective": "l1+cgan"}, (0.86, 0.84, 0.82)),
                Row("PixelGAN (L1+cGAN, 1x1 D)", {"objective": "l1+cgan", "receptive_field": 1}, (0.83, 0.68, 0.78)),
            ),
            metric_names=LAB,
        ),
        ExperimentSet(
            "losses",
            "Seed 003's loss ablation (L1, L2, L1+L2, each with and without cGAN), Cityscapes "
            "labels -> photo, FCN-scores (seed 003 ran it on facades, which is not available here)",
            L2P,
            "label2photo",
            tuple(
                Row(name + suffix, {"objective": objective + extra})
                for name, objective in (("L1", "l1"), ("L2", "l2"), ("L1+L2", "l1+l2"))
                for suffix, extra in (("", ""), ("+cGAN", "+cgan"))
            ),
        ),
        ExperimentSet(
            "augmentation",
            "Augmentation ablation (appendix 6.2's jitter and mirroring), Cityscapes labels -> photo, "
            "L1+cGAN, FCN-scores",
            L2P,
            "label2photo",
            (
                Row("jitter + mirror (paper)", {}),
                Row("mirror only", {"preprocess": "resize", "flip": True}),
                Row("jitter only", {"flip": False}),
                Row("none", {"preprocess": "resize", "flip": False}),
            ),
        ),
        ExperimentSet(
            "batch_size",
            "Batch-size ablation (appendix 6.2 uses 1, 4 and 10; seed 003 compares 1 with 32 on facades), "
            "Cityscapes labels -> photo, L1+cGAN, FCN-scores",
            L2P,
            "label2photo",
            tuple(Row(f"batch {b}", {"batch_size": b}) for b in (1, 4, 10, 32)),
        ),
        ExperimentSet(
            "table1_longer",
            "Table 1's contested rows trained 5 + 5 epochs (29,750 steps) instead of 1 + 1, validated every "
            "epoch, Cityscapes labels -> photo, FCN-scores",
            L2P,
            "label2photo",
            (
                Row("L1", {"objective": "l1"}, (0.42, 0.15, 0.11), (0.60, 0.20, 0.15)),
                Row("cGAN", {"objective": "cgan"}, (0.57, 0.22, 0.16), (0.66, 0.23, 0.18)),
                Row("L1+cGAN", {"objective": "l1+cgan"}, (0.66, 0.23, 0.17), (0.55, 0.20, 0.14)),
            ),
            ground_truth_paper=FCN_GT,
            ground_truth_seed000=(0.76, 0.25, 0.20),
            reduced_overrides={"epochs": 5, "epochs_decay": 5},
            val_every=2975,  # one epoch of the 2,975 training pairs at batch 1
            val_images=100,
        ),
        ExperimentSet(
            "seeds",
            "Seed-to-seed spread: Table 1's L1 and L1+cGAN rows trained from three seeds, Cityscapes "
            "labels -> photo, FCN-scores (how large a gap between two rows must be to mean anything)",
            L2P,
            "label2photo",
            tuple(
                Row(f"{name} (seed {seed})", {"objective": objective, "seed": seed}, paper)
                for name, objective, paper in (
                    ("L1", "l1", (0.42, 0.15, 0.11)),
                    ("L1+cGAN", "l1+cgan", (0.66, 0.23, 0.17)),
                )
                for seed in (0, 1, 2)
            ),
            ground_truth_paper=FCN_GT,
        ),
    )
}
