"""The fused model's settings (saved beside its weights as ``mot.json``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExpertRef(BaseModel):
    """A frozen expert: its name and checkpoint directory (relative: under ``models_dir``)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str


class MotConfig(BaseModel):
    """Architecture and training settings; defaults are the CPU settings of the README.

    The paper's defaults (Q=8, d=2048, 8 heads, router hidden 768, K=3) are for seven 7-8B
    experts; for two experts of 576 and 640 wide the latent is 256 and Q=3 cuts SmolLM2's 30
    layers and Gemma's 18 into stacks of 10 and 6 (no rounding). With two experts K=2: both
    are always active and the router only picks the primary.
    """

    model_config = ConfigDict(extra="forbid")

    experts: list[ExpertRef] = Field(default_factory=lambda: [
        ExpertRef(name="smollm2-135m-instruct", path="smollm2-135m-instruct"),
        ExpertRef(name="gemma-3-270m", path="gemma-3-270m"),
    ])
    stacks: int = Field(3, ge=1, description="Q: interaction layers per expert")
    latent: int = Field(256, ge=8, description="d_s: the shared latent width")
    heads: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    top_k: int = Field(2, ge=1)
    router_hidden: int = Field(128, ge=1)
    encoder: dict[str, Any] = Field(default_factory=lambda: {"kind": "sentence-transformers"})
    cross_attention: bool = Field(
        True, description="False: the control, each primary attends to its own latents only")
