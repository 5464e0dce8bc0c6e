"""The image-routing evaluation on MATH-V (``coe-gateway eval images``).

Image-aware routers (:mod:`coe_gateway.routers.multimodal`) against the same router on text
only, on paired splits (:mod:`.splits`), with feature variants and controls
(:mod:`.variants`), references (:mod:`.references`), curve metrics on the trade-off policy's
sweep (:mod:`.frontier`), paired bootstrap intervals (:mod:`.bootstrap`), the run
(:mod:`.run`) and its report (:mod:`.report`); MathVista's captions and OCR as a *text proxy*
for the image (:mod:`.mathvista`).
"""
