"""model_card: the headline names each accuracy and the file that reproduces it."""

from __future__ import annotations

from typing import Any

from cifar_search.train.model_card import headline, model_card


def metrics(tta: str, **extra: Any) -> dict[str, Any]:
    return {"config": {"tta": tta}, "data": {"test_size": 10000}, "seeds": [0],
            "test_acc": [0.8626], "test_acc_mean": 0.8626, "test_acc_std": 0.0,
            "test_loss": [0.4], "train_seconds": [60.0], "classes": ["cat"], **extra}


def test_tta_headline_gives_both_numbers_and_their_files() -> None:
    m = metrics("flip", test_acc_single=[0.8403], test_acc_single_mean=0.8403,
                test_acc_single_std=0.0, exports={"checks": {}})
    text = headline(m)
    assert "86.26% ± 0.00 with test-time augmentation `flip`" in text
    assert "(`model_tta.onnx`, `model_tta.pt2`, `cifar-search predict`)" in text
    assert "84.03% ± 0.00 with one view per image" in text
    assert "(`model.onnx`, `model.pt2`, `predict --tta none`)" in text
    card = model_card(m)
    assert "| 0 | 86.26% | 84.03% |" in card and 'InferenceSession("model_tta.onnx"' in card


def test_without_exports_tta_or_single_view_numbers() -> None:
    no_export = headline(metrics("flip", test_acc_single_mean=0.84, exports=None))
    assert "model_tta.onnx" not in no_export and "model.onnx" not in no_export
    assert "84.00% ± 0.00 with one view" in no_export
    plain = headline(metrics("none", exports={"checks": {}}))
    assert "one view" not in plain and "Reproduced by `model.onnx` and `model.pt2`" in plain
    assert 'InferenceSession("model.onnx"' in model_card(metrics("none"))
    old = headline(metrics("flip_translate"))  # metrics.json from before test_acc_single
    assert "86.26% ± 0.00** with test-time augmentation `flip_translate`" in old
    assert "| 0 | 86.26% | ? |" in model_card(metrics("flip_translate"))
    assert "autocast" not in old
    bf16 = headline(metrics("flip", test_acc_single_mean=0.84, device={"precision": "bfloat16"}))
    assert "evaluated under bfloat16 autocast" in bf16 and "borderline images" in bf16
