"""Images in requests and image features for image-aware routing.

``images`` decodes and caps the image parts of a request (``data:`` URLs; remote ``http(s)``
images only where the operator allows them, through ``fetch``); ``features`` turns images into
the vectors the image-aware routers (:mod:`coe_gateway.routers.multimodal`) read.
"""
