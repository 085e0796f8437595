"""``camloc probe``: fit a linear classifier on GAP features; the result is a model file whose CAMs are its classes'."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(p: argparse.ArgumentParser) -> None:
    """The command's arguments."""
    p.add_argument("train_features", metavar="TRAIN.npz", help="features of the training images (camloc features)")
    p.add_argument("--test", metavar="TEST.npz", help="features of the test images: report accuracy on them")
    p.add_argument(
        "--kind",
        choices=["svm", "logistic"],
        default="svm",
        help="linear SVM (as the paper) or logistic regression (default: %(default)s)",
    )
    p.add_argument("--C", type=float, default=1.0, help="inverse regularization strength (default: %(default)s)")
    p.add_argument(
        "--out",
        metavar="PROBE.pt",
        help="model file: the backbone with the probe as its GAP head, for every other command's --model",
    )
    p.add_argument("--json", metavar="FILE", help="results file")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Fit the probe, report its accuracies, write the probe file."""
    from ..errors import InvalidArgument
    from ..images import Preprocess
    from ..models.files import save_probe
    from ..training.features import load_features
    from ..training.probes import fit_probe
    from ..utils import versions, write_json

    train_features = load_features(args.train_features)
    fitted = fit_probe(train_features, kind=args.kind, C=args.C)
    accuracy = fitted.accuracy(train_features)
    report = {"train_features": args.train_features, "kind": args.kind, "C": args.C, "train_accuracy": accuracy}
    print(f"camloc: {args.kind} probe, training accuracy {accuracy:.2f} % ({len(train_features.labels)} images)")
    if args.test:
        test_features = load_features(args.test)
        report.update(test_features=args.test, test_accuracy=fitted.accuracy(test_features))
        print(f"camloc: test accuracy {report['test_accuracy']:.2f} % ({len(test_features.labels)} images)")
    if args.out:
        meta = train_features.meta
        if not meta.get("model"):
            raise InvalidArgument(
                "train_features",
                f"{args.train_features}: does not name its backbone model; write it with `camloc features`",
            )
        settings = meta.get("preprocess")
        preprocess = Preprocess.from_dict(settings) if isinstance(settings, dict) else None
        save_probe(
            fitted, args.out, backbone=meta["model"], backbone_weights=meta.get("weights"), preprocess=preprocess
        )
        report["model"] = args.out
        print(f"camloc: probe model in {args.out} (use it as --model {args.out})")
    if args.json:
        write_json({**report, "versions": versions()}, args.json)
    return 0
