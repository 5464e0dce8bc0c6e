"""Image features for image-aware routing: extractors, stores, the featurizer.

Kinds (see :data:`base.FEATURE_KINDS`): ``pixels`` (EfficientNet-Lite0 ImageNet features),
``ocr`` (RapidOCR text through the text encoder, plus box statistics), ``stats``
(hand-made image statistics), ``clip`` (a local CLIP image encoder). Offline work uses
:func:`featurizer.image_features_for_paths` (disk stores by image SHA-256, shipped ones under
``data/image-features``); serving uses :class:`featurizer.ImageFeaturizer` (in-memory LRU,
one worker thread). Nothing heavy is imported here.
"""
