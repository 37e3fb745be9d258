"""``medical.xray``: MAE on projection radiographs (chest X-ray), the recipe of Xiao et al. (medical MAE).

- Input: DICOM (CR/DX, any transfer syntax with an installed decoder) displayed as a viewer would
  (Modality LUT, VOI window or LUT, MONOCHROME1 inverted so that air is dark), or PNG/JPEG/TIFF exports
  at 8 or 16 bit; one gray channel.
- Pretraining: mask ratio 0.90, RandomResizedCrop scale (0.5, 1.0) + horizontal flip only, per-patch
  normalized pixel target; recipes ``configs/medical_xray_vit_small.yaml`` (ViT-S/16, 2-block decoder)
  and ``configs/medical_xray_vit_base.yaml`` (ViT-B/16). An ImageNet MAE checkpoint (3 channels) loads
  into the 1-channel model by summing its patch projection over the colour channels
  (:func:`mae_domains.weights.load_mae_checkpoint`).
- Evaluation: multi-label classification from a ChestX-ray14-style manifest (``image,labels`` with
  ``A|B|C``; "No Finding" is the empty set) scored by per-class and mean ROC-AUC; the fine-tuning recipe
  is layer decay 0.55, drop path 0.2 and RandAugment magnitude 6 (``protocol_defaults``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from mae_domains.data.sample import Sample
from mae_medical.base import COMMON_OPTIONS, MedicalImageAdapter
from mae_medical.synthetic import chest_xray


class XrayAdapter(MedicalImageAdapter):
    name = "medical.xray"
    summary = "Chest X-ray (DICOM as displayed, or PNG/JPEG/TIFF): MAE, mask 0.90, one channel."
    value_range = "0-1: the image as a viewer displays it (modality and VOI LUT or window, MONOCHROME1 inverted)"
    method_papers = ('Xiao, Bai, Sun, Xie, Yuille, Zhou: "Delving into Masked Autoencoders for Multi-Label Thorax '
                     'Disease Classification", WACV 2023 (lambert-x/medical_mae)',)
    default_mask_ratio = 0.90
    evaluation_protocols: ClassVar[tuple[str, ...]] = ("multilabel_map", "linear_probe", "knn", "finetune")
    protocol_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "finetune": {"layer_decay": 0.55, "drop_path": 0.2, "randaugment_magnitude": 6, "pool": "avg"},
        "multilabel_map": {"pool": "avg"},
    }
    option_defaults: ClassVar[dict[str, Any]] = {**COMMON_OPTIONS, "crop_scale": [0.5, 1.0], "hflip": True}
    resizes_whole_image: ClassVar[bool] = True

    def synthetic_sample(self, seed: int) -> Sample:
        """A 64 x 64 chest radiograph caricature in [0, 1] (air dark, bones bright)."""
        image = chest_xray(seed)
        return Sample(image[None], {"source": f"synthetic:xray-{seed}", "sample_id": f"synthetic-xray-{seed}",
                                    "modality": "DX", "photometric": "MONOCHROME2", "frame": 0, "frames": 1})
