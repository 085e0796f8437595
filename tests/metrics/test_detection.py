"""CorLoc by hand, and COCO AP through pycocotools with its traps handled."""

import json

import pytest

from camloc.metrics.detection import CorLoc, coco_ap


def test_corloc_by_hand():
    gt = [(3, (0, 0, 9, 9)), (5, (20, 20, 29, 29))]
    assert CorLoc.hit([(3, (0, 0, 9, 4))], gt) is True  # IoU exactly 0.5 counts
    assert CorLoc.hit([(3, (0, 0, 9, 3))], gt) is False  # IoU 0.4
    assert CorLoc.hit([(5, (0, 0, 9, 9))], gt) is False  # right place, box of another class
    assert CorLoc.hit([(3, (50, 50, 60, 60)), (3, (0, 0, 9, 9))], gt) is False  # only the top box is judged
    assert CorLoc.hit([], gt) is False and CorLoc.hit([(3, (0, 0, 9, 9))], []) is None
    metric = CorLoc()
    for hit in (True, False, None, True):
        metric.update(hit)
    other = CorLoc()
    other.update(False)
    metric.merge(other)
    assert (metric.images, metric.compute()) == (4, 50.0)
    metric.reset()
    assert metric.compute() is None


def _gt(with_info=True):
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 80} for i in (1, 2)]
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 30], "area": 1200, "iscrowd": 0},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 20, 30, 40], "area": 1200, "iscrowd": 0},
    ]
    gt = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    return {"info": {}, **gt} if with_info else gt


def test_the_ground_truth_scored_against_itself_is_100(tmp_path):
    gt = _gt()
    results = [{**{k: a[k] for k in ("image_id", "category_id", "bbox")}, "score": 1.0} for a in gt["annotations"]]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    assert coco_ap(tmp_path / "gt.json", tmp_path / "res.json") == pytest.approx(
        {"ap": 100.0, "ap50": 100.0, "ap75": 100.0}
    )


def test_ap_of_one_hit_and_one_miss_by_hand():
    """Category 1 found first (score 0.9), category 2 missed: per category AP 1 and 0; COCO's 101-point
    interpolation gives category 1 a precision of 1 at every recall level: mean 50."""
    results = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 30], "score": 0.9},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.8},
    ]
    assert coco_ap(_gt(), results) == pytest.approx({"ap": 50.0, "ap50": 50.0, "ap75": 50.0})
    # a box of IoU 0.6 (40 x 30 vs 40 x 18 inside it): counted at IoU 0.50..0.60, not above
    shifted = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 18], "score": 0.9}]
    scores = coco_ap(_gt(), shifted)
    assert scores["ap50"] == pytest.approx(50.0) and scores["ap75"] == 0.0
    assert scores["ap"] == pytest.approx(50.0 * 3 / 10)  # IoU thresholds .50, .55, .60 of the ten


def test_pycocotools_traps():
    # no info block: pycocotools 2.0.9+ fails in loadRes; handled
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 30], "score": 1.0}]
    assert coco_ap(_gt(with_info=False), results)["ap50"] == pytest.approx(50.0)
    # empty results: loadRes fails on them; scored 0
    assert coco_ap(_gt(), []) == {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    # a result on an image the ground truth lacks: one line naming it
    with pytest.raises(ValueError, match="results: image_id 7 is not an image of the ground truth"):
        coco_ap(_gt(), [{"image_id": 7, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}])
    # no ground-truth box at all: undefined
    assert coco_ap({**_gt(), "annotations": []}, results) == {"ap": None, "ap50": None, "ap75": None}


def test_category_by_category_equals_one_plain_cocoeval():
    """Random images, classes, crowd boxes, detections of classes without ground truth: the same three numbers."""
    import numpy as np
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(3)

    def box():
        x, y = rng.integers(0, 80, 2)
        return [int(x), int(y), int(rng.integers(5, 40)), int(rng.integers(5, 40))]

    images = [{"id": i, "file_name": f"{i}.jpg", "width": 120, "height": 120} for i in range(1, 31)]
    annotations, results = [], []
    for image in images:
        for _ in range(int(rng.integers(0, 4))):
            b = box()
            category, crowd = int(rng.integers(1, 9)), int(rng.random() < 0.1)
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category,
                                "bbox": b, "area": b[2] * b[3], "iscrowd": crowd})  # fmt: skip
        for _ in range(int(rng.integers(0, 6))):
            category = int(rng.integers(1, 12))  # 9..11: no ground truth anywhere
            results.append(
                {"image_id": image["id"], "category_id": category, "bbox": box(), "score": float(rng.random())}
            )
    for a in annotations[::3]:  # some good hits
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.5})
    gt = {"info": {}, "images": images, "annotations": annotations,
          "categories": [{"id": k, "name": f"c{k}"} for k in range(1, 40)]}  # fmt: skip
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    plain = COCOeval(coco, coco.loadRes(results), "bbox")  # as users call it: every category, every image
    plain.evaluate()
    plain.accumulate()
    plain.summarize()
    expected = {"ap": 100 * plain.stats[0], "ap50": 100 * plain.stats[1], "ap75": 100 * plain.stats[2]}
    assert 0 < expected["ap"] < expected["ap50"] < 100
    assert coco_ap(gt, results) == pytest.approx(expected, rel=1e-12)
