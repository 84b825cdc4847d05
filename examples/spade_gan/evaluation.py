"""What ``evaluate.py`` runs: load the generator, build the validation split and the scorers, generate, score, and
describe the protocol. Every unusable input becomes an :class:`EvaluationError` naming the flag or the file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from .data import build_dataset
from .data.build import LabelledDataset
from .data.errors import DatasetLayoutError, LabelRangeError
from .scoring.fidelity import FEATURE_DIM, WeightsError, load_inception
from .scoring.generator_scores import SYNTHETIC_EVAL_IMAGES, QualityOptions, format_results, score_generator
from .scoring.segmenter import SegmenterError, SegmenterScorer, read_class_mapping
from .synthesis.inference import generator_function
from .synthesis.loading import LoadedModel, SynthesisError, load_model


class EvaluationError(ValueError):
    """An unusable input of ``evaluate.py``, phrased for the command line."""


def evaluate_checkpoint(args: argparse.Namespace, image_dir: Path) -> dict[str, Any]:
    """Run the evaluation ``args`` (``evaluate.py``'s parsed command line) describes, saving images to ``image_dir``.

    Returns:
        the results of :func:`~spade_gan.scoring.generator_scores.score_generator` plus ``"checkpoint"``, ``"dataset"``,
        ``"protocol"`` and ``"table"`` (the printed form).

    Raises:
        EvaluationError: a bad flag value, checkpoint, dataset, weights file or segmenter.
        MissingPackageError: FID/KID asked for without torch-fidelity installed.
    """
    _check_counts(args)
    _check_device(args.device)
    try:
        model = load_model(args.checkpoint, preset=args.preset, device=args.device)
    except SynthesisError as exc:
        raise EvaluationError(str(exc)) from exc
    name, dataset = validation_split(args, model)
    if args.inception_weights and len(dataset) < 2:
        raise EvaluationError(f"FID/KID need at least 2 images, --dataset {name} gives {len(dataset)}")
    options = QualityOptions(
        alignment=name == "synthetic",
        kid_subsets=args.kid_subsets,
        kid_subset_size=args.kid_subset_size,
        image_dir=image_dir,
        batch_size=args.batch_size,
        progress=args.progress,
    )
    try:
        if args.inception_weights:
            options.inception = load_inception(args.inception_weights)
        if args.segmenter:
            mapping = (
                read_class_mapping(args.segmenter_classes, model.spec.label_nc) if args.segmenter_classes else None
            )
            size = tuple(args.segmenter_size) if args.segmenter_size else None
            options.segmenter = SegmenterScorer(
                args.segmenter,
                model.spec.label_nc,
                mapping=mapping,
                size=size,
                input_range=args.segmenter_input,
                device=args.device,
            )
        elif args.segmenter_classes or args.segmenter_size:
            raise EvaluationError("--segmenter-classes and --segmenter-size need --segmenter")
    except (WeightsError, SegmenterError) as exc:
        raise EvaluationError(str(exc)) from exc
    if not options.anything:
        raise EvaluationError(
            f"nothing to compute on dataset {name!r}: the alignment metric exists for the built-in scenes only; "
            "pass --inception-weights (FID/KID) and/or --segmenter"
        )
    try:
        results = score_generator(generator_function(model, args.seed, args.device), dataset, options)
    except (SegmenterError, LabelRangeError) as exc:
        raise EvaluationError(str(exc)) from exc
    results["checkpoint"] = str(args.checkpoint)
    results["dataset"] = name
    results["protocol"] = protocol(results, options)
    results["table"] = format_results(results)
    return results


def validation_split(args: argparse.Namespace, model: LoadedModel) -> tuple[str, LabelledDataset]:
    """The dataset name and its validation items at the generator's geometry (the first ``--num-images``)."""
    config = model.config or {}
    name = args.dataset or config.get("dataset")
    if name is None:
        raise EvaluationError(f"--checkpoint {args.checkpoint} is an original state dict: pass --dataset")
    spec = model.spec
    fields: dict[str, Any] = {
        "split": "val",
        "crop_size": spec.crop_size,
        "aspect_ratio": spec.aspect_ratio,
        "contain_dontcare": spec.contain_dontcare,
        "use_instance": spec.use_instance,
    }
    if name == "synthetic":
        fields["num_images"] = args.num_images or SYNTHETIC_EVAL_IMAGES
    else:
        fields["dataroot"] = args.dataroot or (config.get("dataroot") if name == config.get("dataset") else None)
        if name == "custom":
            if not (args.label_dir and args.image_dir):
                raise EvaluationError("--dataset custom needs --label-dir and --image-dir (the validation pairs)")
            fields.update(
                label_dir=args.label_dir,
                image_dir=args.image_dir,
                instance_dir=args.instance_dir,
                label_nc=spec.label_nc,
            )
    try:
        dataset = build_dataset(name, **fields)
    except (DatasetLayoutError, LabelRangeError, FileNotFoundError, ValueError) as exc:
        raise EvaluationError(f"--dataset {name}: {exc}") from exc
    if int(dataset.semantic_nc) != spec.semantic_nc:
        raise EvaluationError(
            f"--dataset {name} gives {dataset.semantic_nc} semantic channels (label_nc={dataset.label_nc}, dontcare="
            f"{dataset.contain_dontcare}, instance={dataset.use_instance}) but --checkpoint {args.checkpoint} takes "
            f"{spec.semantic_nc}"
        )
    if len(dataset) == 0:
        raise EvaluationError(f"--dataset {name}: the validation split has no label maps")
    if args.num_images is not None and name != "synthetic" and args.num_images < len(dataset):
        dataset = Subset(dataset, range(args.num_images))  # type: ignore[assignment]
    return name, dataset


def protocol(results: dict[str, Any], options: QualityOptions) -> dict[str, Any]:
    """The settings a reader needs to reproduce the numbers."""
    h, w = results["size"]
    out: dict[str, Any] = {"images": results["num_images"], "resolution": f"{h}x{w}", "generator_dtype": "float32"}
    if options.inception is not None:
        out["fid_kid"] = {
            "features": f"torch-fidelity inception-v3-compat pool, {FEATURE_DIM}-d",
            "input": "uint8 of the saved PNGs, resized to 299x299 in the network (TensorFlow-1 bilinear)",
            "reference": "the real images of the same label maps, same resize and crop",
            "kid": f"{options.kid_subsets} subsets of {min(options.kid_subset_size, results['num_images'])}, "
            "cubic polynomial kernel, unbiased",
        }
    if options.segmenter is not None:
        s = options.segmenter
        out["segmenter"] = {
            "file": str(s.path),
            "input": s.input_range,
            "size": list(s.size) if s.size else "as generated",
            "mapping": "identity" if s.mapping is None else s.mapping.tolist(),
        }
    return out


def _check_device(device: str) -> None:
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise EvaluationError(f"--device {device!r}: not a device name ({exc})") from exc
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise EvaluationError(f"--device {device!r}: CUDA is not available here")


def _check_counts(args: argparse.Namespace) -> None:
    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--num-images", args.num_images, 1),
        ("--kid-subsets", args.kid_subsets, 1),
        ("--kid-subset-size", args.kid_subset_size, 2),
    ):
        if value is not None and value < low:
            raise EvaluationError(f"{flag} must be >= {low}, got {value}")
    if args.segmenter_size and min(args.segmenter_size) < 1:
        raise EvaluationError(f"--segmenter-size must be positive, got {args.segmenter_size}")
