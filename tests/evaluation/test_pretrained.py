"""Pretrained MobileNetV2: agreement with torchcam and pytorch-grad-cam, and localization on real ImageNet images."""

import cv2
import numpy as np
import pytest
import torch
from skimage import data

import camloc
from camloc.reports.figures import save_image


@pytest.fixture(scope="module")
def photos(tmp_path_factory, mobilenet):
    folder = tmp_path_factory.mktemp("photos")
    paths = [save_image(getattr(data, n)(), folder / f"{n}.png") for n in ("chelsea", "coffee", "astronaut", "rocket")]
    return camloc.load_batch(paths, camloc.model_info(mobilenet).preprocess)


def test_offline_weights_classify_chelsea_as_egyptian_cat(mobilenet, photos):
    info = camloc.model_info(mobilenet)
    assert info.name == "mobilenet_v2 (IMAGENET1K_V1)"
    assert (info.preprocess.resize_size, info.preprocess.size) == (256, 224)
    out = camloc.CAM(mobilenet)(photos.images, topk=5)
    assert out.classes[0, 0].item() == 285
    assert info.class_name(285) == "Egyptian cat"
    assert out.classes[1, 0].item() == 967  # coffee: espresso
    with torch.no_grad():
        reference = mobilenet(photos.images)  # plain eager forward, NCHW, BatchNorm not folded
    assert torch.equal(out.classes, reference.topk(5, dim=1).indices)
    assert torch.allclose(out.logits, reference, atol=1e-4)


@pytest.mark.peers
def test_equals_torchcam_cam(mobilenet, photos):
    from torchcam.methods import CAM as TorchcamCAM

    ours = camloc.CAM(mobilenet, normalize="minmax")(photos.images, topk=1)
    with TorchcamCAM(mobilenet, target_layer="features.18", fc_layer="classifier.1") as extractor:
        scores = mobilenet(photos.images)
        theirs = extractor(scores.argmax(1).tolist(), scores)[0]
    # torchcam divides by (max + 1e-8) after subtracting the min: 1e-6 covers that and float32 rounding.
    assert torch.allclose(ours.raw[:, 0], theirs, atol=1e-5)
    assert not any(m._forward_hooks for m in mobilenet.modules())


@pytest.mark.peers
def test_gradcam_of_pytorch_grad_cam_equals_cam_on_a_gap_net(mobilenet, photos):
    """Grad-CAM's weights on a GAP + linear net are w_k^c / (h w): after ReLU + min-max the maps coincide."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ours = camloc.CAM(mobilenet, relu=True, normalize="minmax")(photos.images, topk=1)
    with GradCAM(model=mobilenet, target_layers=[mobilenet.features[-1]]) as gradcam:
        theirs = gradcam(photos.images, targets=[ClassifierOutputTarget(c) for c in ours.classes[:, 0].tolist()])
    # pytorch-grad-cam min-max normalizes at feature resolution, resizes with cv2 (bilinear), then
    # min-max normalizes again (the resized map's extremes differ): do the same to ours.
    resized = torch.from_numpy(np.stack([cv2.resize(m.numpy(), (224, 224)) for m in ours.raw[:, 0]]))
    expected = camloc.normalize_maps(resized, "minmax").numpy()
    assert np.abs(theirs - expected).max() < 1e-4


@pytest.mark.slow
def test_paper_boxes_localize_real_imagenet_images(mobilenet, val_boxes):
    """The paper's rule on the ground-truth class: IoU >= 0.5 with a GT box for most images."""
    preprocess = camloc.Preprocess(mode="squash")  # the WSOL protocol: the whole image, squashed to 224
    cam = camloc.CAM(mobilenet)
    paths = list(val_boxes)
    hits, seen = 0, 0
    for start in range(0, len(paths), 32):
        batch = camloc.load_batch(paths[start : start + 32], preprocess)
        assert not batch.errors
        labels = [val_boxes[p][0] for p in paths[start : start + 32]]
        out = cam(batch.images, classes=labels, upsample=False)
        for i in range(len(batch.paths)):
            heat = camloc.normalize_maps(camloc.to_image_frame(out.raw[i], batch.geometries[i]), "minmax")[0]
            box = camloc.paper_box(heat, 0.2)
            hits += camloc.best_iou(box, val_boxes[paths[start + i]][1]) >= 0.5
            seen += 1
    assert seen == len(paths) == 725
    rate = hits / seen
    print(f"paper rule, GT class, IoU >= 0.5: {rate:.2%} of {seen}")
    assert rate >= 0.5
