"""MaxBoxAccV2 by map size on the CUB training images a `camloc train` run held out (never trained on).

    .venv/bin/camloc train ../shared/data/cub-200-2011-50 --arch mobilenet_v2 --pretrained --out out/cub/m.pt
    .venv/bin/python benchmarks/cub_map_sizes.py out/cub/m.pt [--sizes 448 512 ... 768] [--json FILE]

The run's own `--calibrate` images (its `calibrate` and `seed`, read from the model file: 2 boxed
images a species, 100 for the 50 species) are the images it set apart before training; the map
size of the recipe (640 for 448) was chosen on the test split, so these show whether the choice
holds on images that played no part in it. Each size: `camloc.evaluate(..., map_size=S)` with PC1
and with CAM (classification stays at the model's own size).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import camloc
from camloc.datasets.base import hold_out
from camloc.datasets.registry import open_train_test
from camloc.evaluation.evaluate import evaluate
from camloc.models import read_model_file

CUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "cub-200-2011-50"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a camloc train model file of the CUB data")
    parser.add_argument("--data", default=str(CUB), help="the data it was trained on (default: %(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 512, 576, 608, 640, 672, 704, 768])
    parser.add_argument("--json", help="also write every summary here")
    args = parser.parse_args()

    config = read_model_file(args.model)["train"]["config"]
    train, _ = open_train_test(args.data)
    _, held = hold_out(train, config["calibrate"], config["seed"])
    model = camloc.load_model(args.model)
    info = camloc.model_info(model)
    print(f"{len(held)} held-out images; the model classifies at {info.preprocess.size} px", flush=True)
    rows = {}
    for name, method in (("pc1", camloc.PC1(model)), ("cam", camloc.CAM(model))):
        for size in args.sizes:
            start = time.perf_counter()
            s = evaluate(held, method, info=info, map_size=size, batch_size=16, progress=False).summary
            rows[f"{name}-{size}"] = s
            v2 = s["max_box_acc_v2_per_iou"]
            print(
                f"{name} at {size}: cls {s['cls_top1']:.2f}, MaxBoxAccV2 {s['max_box_acc_v2']:.2f} "
                f"({v2['30']:.2f} / {v2['50']:.2f} / {v2['70']:.2f}), MaxBoxAcc {s['max_box_acc']:.2f}, "
                f"{time.perf_counter() - start:.0f} s",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
