"""``Pipeline``: a tokenizer and a transformer that fit together, saved as one folder, called to sample.

Folder layout (diffusers-like)::

    pipeline.json          {"_class_name": "Pipeline", "tokenizer": "tokenizer", "transformer": "transformer",
                            optional "recommended_sampling": {...} and "class_names": ["T-shirt/top", ...]}
    tokenizer/             config.json + model.safetensors
    transformer/           config.json + model.safetensors
    text_encoder/          text pipelines only (see ``text_pipeline.py``)

``_class_name`` selects the pipeline class (``Pipeline`` for class-conditional VAR models, ``TextPipeline``
for STAR), and each component's ``config.json`` names its class, so ``Pipeline.from_pretrained`` returns
the right kind. The call takes either class labels or prompts; the pipeline turns them into a condition
object (``ClassCondition`` / ``TextCondition``) that the one sampler loop understands.

References: diffusers ``DiffusionPipeline`` and ``pipelines/dit/pipeline_dit.py``.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from nextscale.pretrained import (
    atomic_write_text,
    load_component,
    read_json_file,
    resolve_model_path,
    save_component,
)
from nextscale.sampling.cpu_memory import MemoryHold
from nextscale.sampling.editing import (
    KeepTokensConstraint,
    PreparedImage,
    box_mask,
    extend_canvas,
    keep_mask_for,
    mask_for_image,
    mask_from_array,
    prepare_image,
    scale_keep_masks,
)
from nextscale.sampling.guidance import SamplingConfig, ScaleOverride
from nextscale.sampling.linear_kernels import choose_linear_kernel
from nextscale.sampling.outputs import OUTPUT_TYPES, EditOutput, PipelineOutput, to_output_type
from nextscale.sampling.precision import (
    PRECISIONS,
    Precision,
    cast_linear_weights,
    choose_precision,
    quantize_dynamic_int8,
)
from nextscale.sampling.sampler import ScaleSampler, TokenConstraint, check_components_fit
from nextscale.tokenizer.vqvae import MultiScaleVQVAE
from nextscale.transformer.conditioning import Condition
from nextscale.transformer.model import ScaleTransformer
from nextscale.transformer.raster_model import RasterTransformer
from nextscale.transformer.text_model import TextScaleTransformer

PIPELINE_FILE = "pipeline.json"
SEED_RANGE = (-(2**63), 2**64)
# Sampling settings a pipeline folder may recommend (pipeline.json "recommended_sampling"); the CLI uses them
# for flags the user leaves out, and Python users can pass ``**pipe.recommended_sampling``.
RECOMMENDABLE = ("cfg", "top_k", "top_p", "temperature")
# What pipeline.json may hold, and the JSON type of each entry.
PIPELINE_KEYS = {
    "_class_name": str,
    "tokenizer": str,
    "transformer": str,
    "text_encoder": (str, type(None)),
    "recommended_sampling": dict,
    "class_names": list,
}
COMPONENT_CLASSES = {
    cls.__name__: cls for cls in (MultiScaleVQVAE, ScaleTransformer, TextScaleTransformer, RasterTransformer)
}
# Pipeline classes by the name pipeline.json records; subclasses register themselves.
PIPELINE_CLASSES: dict[str, type[Pipeline]] = {}
# Keyword arguments of a text pipeline call (a class pipeline refuses them).
TEXT_INPUTS = (
    "prompt",
    "negative_prompt",
    "prompt_embeds",
    "prompt_attention_mask",
    "pooled_prompt_embeds",
    "negative_prompt_embeds",
    "negative_prompt_attention_mask",
    "negative_pooled_prompt_embeds",
)


def load_named_component(directory: Path, device: str | torch.device) -> torch.nn.Module:
    """Load a component folder whose config.json names its class."""
    payload = read_json_file(
        directory / "config.json", f"{directory} is not a component folder (expected config.json and model.safetensors)"
    )
    name = payload.get("class")
    if name not in COMPONENT_CLASSES:
        raise ValueError(f"{directory} holds an unknown component class {name!r}; known: {sorted(COMPONENT_CLASSES)}")
    return load_component(COMPONENT_CLASSES[name], directory, device)


class Pipeline:
    """Class-conditional next-scale generation (VAR): ``pipe(class_labels=[207, 980], seed=0).images``.

    ``Pipeline.from_pretrained(folder)`` returns the folder's kind (this class or ``TextPipeline``).
    """

    # How the sampling loop computes (``use_precision``); float32 unless asked otherwise.
    precision: Precision = Precision("fp32", "default")

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        PIPELINE_CLASSES[cls.__name__] = cls

    def __init__(
        self, tokenizer: MultiScaleVQVAE, transformer: ScaleTransformer, class_names: Sequence[str] | None = None
    ) -> None:
        self.check_transformer(transformer)
        self.tokenizer = tokenizer.eval()
        self.transformer = transformer.eval()
        self.sampler = self.make_sampler(self.tokenizer, self.transformer)
        self.recommended_sampling: dict = {}
        self.class_names = self.check_class_names(class_names)
        self.memory_hold = MemoryHold(owner=self)

    def check_class_names(self, class_names: Sequence[str] | None) -> tuple[str, ...] | None:
        """One distinct, non-empty name per class id (``class_names[i]`` is class ``i``), or None."""
        if class_names is None:
            return None
        names = tuple(class_names)
        if not all(isinstance(name, str) and name.strip() for name in names):
            raise TypeError(f"class_names must be non-empty strings, got {list(names)[:5]}")
        if len(names) != self.num_classes:
            raise ValueError(f"got {len(names)} class names for a model with {self.num_classes} classes")
        if len({normalise_name(name) for name in names}) != len(names):
            raise ValueError(f"class names must be distinct (ignoring case), got {list(names)}")
        return names

    @staticmethod
    def make_sampler(tokenizer: MultiScaleVQVAE, transformer: torch.nn.Module) -> ScaleSampler:
        """The sampling loop of this kind of pipeline (checks that the components fit)."""
        check_components_fit(tokenizer, transformer)
        return ScaleSampler(tokenizer, transformer)

    @staticmethod
    def check_transformer(transformer: torch.nn.Module) -> None:
        if not isinstance(transformer, ScaleTransformer):
            raise TypeError(
                f"Pipeline needs a class-conditional ScaleTransformer, got {type(transformer).__name__}; "
                "text models go in a TextPipeline"
            )

    # ----------------------------------------------------------------------------------------- folders
    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | torch.device = "cpu", dtype: str = "fp32", cuda_graphs: bool = False
    ) -> Pipeline:
        """Load a pipeline folder (local paths only; nothing is downloaded); returns the kind it records.

        ``path`` may also name a model shipped with the package: ``"bundled:fashion-mnist"`` (class-conditional)
        or ``"bundled:scenes"`` (text-to-image). ``dtype`` is the sampling precision: "fp32" (exact), "bf16",
        "fp16", "int8" or "auto" (the fastest this device supports; see ``nextscale.sampling.precision``).
        ``cuda_graphs`` replays each scale's transformer step as a CUDA graph (see :meth:`use_cuda_graphs`).
        """
        if dtype not in PRECISIONS:  # before loading anything
            raise ValueError(f"dtype must be one of {PRECISIONS}, got {dtype!r}")
        path = resolve_model_path(path)
        index = read_json_file(
            path / PIPELINE_FILE,
            f"{path} is not a pipeline folder (expected {PIPELINE_FILE}, tokenizer/ and transformer/; "
            "see `nextscale convert` and `nextscale export`)",
        )
        check_index(index, path / PIPELINE_FILE)
        from nextscale.sampling import raster_pipeline, text_pipeline  # noqa: F401  (register their classes)

        name = index.get("_class_name", "Pipeline")
        if name not in PIPELINE_CLASSES:
            raise ValueError(f"{path / PIPELINE_FILE} names an unknown pipeline class {name!r}")
        pipeline_cls = PIPELINE_CLASSES[name]
        if not issubclass(pipeline_cls, cls):
            raise ValueError(f"{path} holds a {name}, not a {cls.__name__}; load it with Pipeline.from_pretrained")
        pipeline = pipeline_cls.from_components(path, index, device).use_precision(dtype)
        return pipeline.use_cuda_graphs() if cuda_graphs else pipeline

    def keep_memory(self) -> None:
        """On a CPU, keep freed activations for reuse from this call on (``nextscale.sampling.cpu_memory``: no
        fresh page faults from the second call on, same numbers); :meth:`release_memory` gives them back."""
        if self.device.type == "cpu":
            self.memory_hold.acquire()

    def release_memory(self) -> None:
        """Give back what the pipeline keeps between calls: the kept freed CPU memory and the KV cache."""
        self.sampler.steps.release()
        self.memory_hold.release()

    def use_cuda_graphs(self) -> Pipeline:
        """Replay each scale's transformer step as a captured CUDA graph from now on (next-scale pipelines on a
        CUDA device; see ``nextscale.sampling.cuda_graphs``): the first call per batch size captures, later calls
        replay. Tokens equal the eager loop's in float32."""
        if self.device.type != "cuda":
            raise ValueError(
                f"CUDA graphs need a CUDA device; this pipeline is on {self.device.type} (load it with device='cuda')"
            )
        if not isinstance(self.sampler, ScaleSampler):
            raise ValueError(f"CUDA graphs are built for next-scale sampling, not {type(self.sampler).__name__}")
        self.sampler = ScaleSampler(self.tokenizer, self.transformer, cuda_graphs=True)
        return self

    def use_precision(self, dtype: str, linear_kernel: str | None = None) -> Pipeline:
        """Sample in ``dtype`` from now on (see :meth:`from_pretrained`); ``self.precision.reason`` says why.

        ``linear_kernel`` (with "fp32" on a CPU): what computes the transformer's linear products: "blas"
        (PyTorch's own, the exact path's), "onednn" (faster for wide models, not bit-exact), or "auto" (the faster
        of the two at this model's width, timed at the first call); see ``nextscale.sampling.linear_kernels``.
        """
        precision = choose_precision(dtype, self.device)
        if linear_kernel is not None:
            if precision.name != "fp32":
                raise ValueError(f"linear_kernel applies to fp32 sampling, not {precision.name}")
            if linear_kernel != "auto":  # checked now; "auto" is timed at the first call
                width = self.transformer.config.embed_dim
                linear_kernel, _ = choose_linear_kernel(linear_kernel, width, self.device)
            precision = dataclasses.replace(precision, linear_kernel=linear_kernel)
        if self.precision.name != "fp32" and precision.name != self.precision.name:
            raise ValueError(
                f"this pipeline's transformer already holds {self.precision.name} weights; load the folder again "
                f"with Pipeline.from_pretrained(path, dtype={precision.name!r})"
            )
        if precision.name != self.precision.name:
            if precision.name == "int8":
                quantized = quantize_dynamic_int8(self.transformer)
                if quantized is None:
                    raise ValueError("this PyTorch build has no quantised engine for int8; use dtype='bf16' or 'fp32'")
                self.transformer = quantized.eval()
                self.sampler = type(self.sampler)(self.tokenizer, self.transformer)
            elif precision.autocast_dtype is not None:
                cast_linear_weights(self.transformer, precision.autocast_dtype)
        if self.device.type == "cpu" and precision.name != "fp32":
            # Faster here but not bit-identical images (within 3e-5), so only on the fast paths.
            self.tokenizer.use_channels_last_decoder()
        self.precision = precision
        return self

    def settle_linear_kernel(self) -> None:
        """At the first float32 call, time the two linear kernels at this model's width and keep the faster."""
        if self.precision.name != "fp32" or self.precision.linear_kernel != "auto":
            return
        kernel, why = choose_linear_kernel("auto", self.transformer.config.embed_dim, self.device)
        reason = f"{self.precision.reason}; linear products in {kernel} ({why})"
        self.precision = dataclasses.replace(self.precision, linear_kernel=kernel, reason=reason)

    @classmethod
    def from_components(cls, path: Path, index: dict, device: str | torch.device) -> Pipeline:
        """Build the pipeline from the component folders that ``index`` (pipeline.json) names."""
        tokenizer = load_named_component(path / index.get("tokenizer", "tokenizer"), device)
        transformer = load_named_component(path / index.get("transformer", "transformer"), device)
        pipe = cls(tokenizer, transformer, class_names=index.get("class_names"))
        return pipe.recommend(**index.get("recommended_sampling", {}))

    def recommend(self, **settings) -> Pipeline:
        """Record the sampling settings this model is meant to be used with (saved in pipeline.json)."""
        unknown = sorted(set(settings) - set(RECOMMENDABLE))
        if unknown:
            raise ValueError(f"recommended_sampling has unknown settings {unknown}; known: {list(RECOMMENDABLE)}")
        SamplingConfig(**settings)  # validates the values
        self.recommended_sampling = dict(settings)
        return self

    def index(self) -> dict:
        """What pipeline.json records."""
        index = {"_class_name": type(self).__name__, "tokenizer": "tokenizer", "transformer": "transformer"}
        if getattr(self, "recommended_sampling", None):
            index["recommended_sampling"] = dict(self.recommended_sampling)
        if getattr(self, "class_names", None):
            index["class_names"] = list(self.class_names)
        return index

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> None:
        """Write the folder; ``dtype=torch.float16`` halves the size (weights load back as float32)."""
        path = Path(path)
        save_component(self.tokenizer, path / "tokenizer", dtype=dtype)
        save_component(self.transformer, path / "transformer", dtype=dtype)
        atomic_write_text(path / PIPELINE_FILE, json.dumps(self.index(), indent=2) + "\n")

    def to(self, device: str | torch.device) -> Pipeline:
        self.release_memory()
        self.tokenizer.to(device)
        self.transformer.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return self.sampler.device

    @property
    def num_classes(self) -> int:
        return self.transformer.config.num_classes

    @property
    def is_text_conditional(self) -> bool:
        return False

    @property
    def image_size(self) -> int:
        return self.tokenizer.config.image_size

    # ---------------------------------------------------------------------------------------- sampling
    def class_ids(self, labels: Sequence[int | str] | int | str) -> list[int]:
        """Class ids or names (``"Sneaker"``, case-insensitive; a name with "/" also answers to each part, so
        ``"t-shirt"`` finds ``"T-shirt/top"``) -> ids in [0, num_classes); a clear error for anything else."""
        labels = [labels] if isinstance(labels, (int, str)) else list(labels)
        ids = []
        for label in labels:
            if isinstance(label, str) and label.strip().lstrip("-").isdigit():
                label = int(label)
            if isinstance(label, str):
                ids.append(self.class_id_of_name(label))
            elif isinstance(label, numbers.Integral) and not isinstance(label, bool):
                if not 0 <= int(label) < self.num_classes:
                    raise ValueError(
                        f"class {int(label)} is out of range: this model has classes 0..{self.num_classes - 1}"
                        + (f" ({self.describe_classes()})" if self.class_names else "")
                    )
                ids.append(int(label))
            else:
                raise TypeError(f"a class label is an int id or a class name, got {label!r}")
        return ids

    def class_id_of_name(self, name: str) -> int:
        wanted = normalise_name(name)
        for index, known in enumerate(self.class_names or ()):
            if wanted == normalise_name(known) or wanted in (normalise_name(part) for part in known.split("/")):
                return index
        if not self.class_names:
            raise ValueError(
                f"class {name!r}: this model records no class names; give an id in 0..{self.num_classes - 1}"
            )
        raise ValueError(f"unknown class name {name!r}; valid names: {self.describe_classes()}")

    def describe_classes(self) -> str:
        """ "0 T-shirt/top, 1 Trouser, ..." (or "0..C-1" without names)."""
        if not self.class_names:
            return f"0..{self.num_classes - 1}"
        return ", ".join(f"{index} {name}" for index, name in enumerate(self.class_names))

    def make_generator(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
        if seed is not None and generator is not None:
            raise ValueError("give either seed or generator, not both")
        if seed is None:
            return generator
        if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
            raise TypeError(f"seed must be an int, got {seed!r}")
        if not SEED_RANGE[0] <= seed < SEED_RANGE[1]:  # what torch.Generator.manual_seed can take
            raise ValueError(f"seed must be an integer in [-2**63, 2**64), got {seed}")
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def __call__(
        self,
        class_labels: Sequence[int] | torch.Tensor | int | None = None,
        prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        cfg: float = 1.5,
        top_k: int | None = None,
        top_p: float | None = None,
        temperature: float = 1.0,
        smooth: bool = False,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        output_type: str = "pil",
        cfg_schedule: str = "linear",
        overrides: Sequence[ScaleOverride] = (),
        constraint: TokenConstraint | None = None,
        **text_inputs,
    ) -> PipelineOutput:
        """Sample images.

        Args:
            class_labels: labels (each repeated ``num_images_per_prompt`` times), or None to draw
                ``num_images_per_prompt`` labels from the generator (the official sampler's first draw).
            prompt: prompts, for text pipelines (a class pipeline refuses them).
            num_images_per_prompt: images per label or prompt.
            cfg, top_k, top_p, temperature, smooth, cfg_schedule, overrides: see ``SamplingConfig``.
            seed / generator: source of randomness; a seed makes a generator on the pipeline's device.
            output_type: "pil", "pt" ((B, 3, H, W) in [0, 1]) or "np" ((B, H, W, 3) uint8).
            constraint: per-scale token hook (editing).
            **text_inputs: ``negative_prompt``, ``prompt_embeds``, ``prompt_attention_mask``,
                ``pooled_prompt_embeds`` and the three ``negative_*`` (text pipelines; see ``TextPipeline``).
        Returns:
            PipelineOutput with ``images``, ``tokens`` (B, L) and ``class_labels`` or ``prompts``.
        """
        unknown = sorted(set(text_inputs) - set(TEXT_INPUTS))
        if unknown:
            raise TypeError(f"unexpected argument(s) {unknown}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not isinstance(num_images_per_prompt, numbers.Integral) or isinstance(num_images_per_prompt, bool):
            raise TypeError(f"num_images_per_prompt must be an int, got {num_images_per_prompt!r}")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        config = SamplingConfig(
            cfg=cfg,
            cfg_schedule=cfg_schedule,
            top_k=top_k,
            top_p=top_p,
            temperature=temperature,
            smooth=smooth,
            overrides=tuple(overrides),
        )
        generator = self.make_generator(seed, generator)
        guided = config.uses_guidance(self.transformer.config.schedule.num_scales)
        condition = self.make_condition(class_labels, prompt, int(num_images_per_prompt), guided, text_inputs)
        self.keep_memory()
        self.settle_linear_kernel()
        with self.precision.autocast(self.device), self.precision.linear_products():
            result = self.sampler.sample(
                condition,
                batch_size=int(num_images_per_prompt),
                config=config,
                generator=generator,
                constraint=constraint,
            )
        with self.precision.decoder_autocast(self.device):
            images = self.sampler.decode(result.f_hat)
        prompts = self.prompts_per_image(prompt, int(num_images_per_prompt))
        return PipelineOutput(
            images=to_output_type(images, output_type),
            tokens=result.tokens,
            class_labels=result.class_labels,
            prompts=prompts,
        )

    def make_condition(
        self,
        class_labels: Sequence[int] | torch.Tensor | int | None,
        prompt: str | list[str] | None,
        num_images_per_prompt: int,
        guided: bool,
        text_inputs: dict,
    ) -> Condition | None:
        """Class labels -> a ClassCondition (None: the sampler draws labels)."""
        if prompt is not None or any(value is not None for value in text_inputs.values()):
            raise ValueError("this pipeline is class-conditional; pass class_labels (prompts need a text pipeline)")
        if class_labels is None:
            return None
        if isinstance(class_labels, (int, str)):
            class_labels = [class_labels]
        if not isinstance(class_labels, torch.Tensor):
            class_labels = list(class_labels)
            if not class_labels:
                raise ValueError("class_labels is empty; give at least one label, or None to draw labels")
            # names become ids; the null id (num_classes: unconditional) stays allowed here, as for tensors
            null_id = self.transformer.config.null_class_id
            class_labels = [label if label == null_id else self.class_ids([label])[0] for label in class_labels]
        return self.sampler.class_condition(class_labels).repeat_interleave(num_images_per_prompt)

    @staticmethod
    def prompts_per_image(prompt: str | list[str] | None, num_images_per_prompt: int) -> list[str] | None:
        if prompt is None:
            return None
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        return [text for text in prompts for _ in range(num_images_per_prompt)]

    @torch.no_grad()
    def decode_tokens(
        self, tokens: torch.Tensor, output_type: str = "pt"
    ) -> list[Image.Image] | torch.Tensor | np.ndarray:
        """(B, L) tokens -> images (e.g. to re-render saved tokens)."""
        indices = self.tokenizer.indices_from_tokens(tokens.to(self.device))
        images = self.tokenizer.decode(indices).add(1).div(2)
        return to_output_type(images, output_type)

    # ----------------------------------------------------------------------------------------- editing
    def edit(
        self,
        image: str | Image.Image | torch.Tensor,
        mode: str = "inpaint",
        box: tuple[float, float, float, float] | None = None,
        mask=None,
        box_in_pixels: bool = False,
        class_label: int | None = None,
        num_images: int = 1,
        prompt: str | None = None,
        **sampling,
    ) -> EditOutput:
        """Zero-shot inpainting / outpainting / class- or text-conditional editing of a real image.

        Args:
            image: a path, a PIL image (any size: center-cropped and resized), or a (1, C, S, S) tensor in [-1, 1].
            mode: "inpaint" regenerates the region and keeps the rest; "outpaint" keeps the region and
                regenerates the rest.
            box: the region as (y0, x0, y1, x1) fractions (or pixels of the model-size image with box_in_pixels).
            mask: the region as a 2-D array / PIL image of any size (True / white = region).
            class_label: target class of the generated part (class pipelines); None = unconditional.
            num_images: results to draw.
            prompt: what the generated part should show (text pipelines); None = the empty prompt.
            **sampling: cfg, top_k, top_p, temperature, smooth, seed, generator, output_type (see ``__call__``).
        Returns:
            EditOutput; ``.pasted()`` gives the results at the input's original size.
        """
        if (box is None) == (mask is None):
            raise ValueError("give exactly one of box=(y0, x0, y1, x1) or mask=<array or image>")
        prepared = prepare_image(image, self.image_size, self.tokenizer.config.in_channels)
        side = self.transformer.config.scale_sides[-1]
        region = (
            box_mask(side, box, self.image_size if box_in_pixels else None)
            if box is not None
            else mask_for_image(mask, prepared, side)
        )
        return self.edit_with_keep_mask(
            prepared, keep_mask_for(mode, region), class_label, num_images, prompt=prompt, **sampling
        )

    def inpaint(self, image, box=None, mask=None, **kwargs) -> EditOutput:
        """Regenerate the region (box or mask), keep everything else."""
        return self.edit(image, mode="inpaint", box=box, mask=mask, **kwargs)

    def outpaint(self, image, box=None, mask=None, inner_fraction: float | None = None, **kwargs) -> EditOutput:
        """Keep the region and regenerate the rest; or, with ``inner_fraction``, shrink the whole image into
        the centre of the canvas and generate a frame around it (extending the picture)."""
        if inner_fraction is None:
            return self.edit(image, mode="outpaint", box=box, mask=mask, **kwargs)
        if box is not None or mask is not None:
            raise ValueError("inner_fraction places the whole image; do not also give box or mask")
        prepared = prepare_image(image, self.image_size, self.tokenizer.config.in_channels)
        canvas, placed = extend_canvas(prepared.tensor, inner_fraction)
        side = self.transformer.config.scale_sides[-1]
        keep = keep_mask_for("outpaint", mask_from_array(placed, side))
        framed = PreparedImage(canvas, prepared.original, prepared.crop_box)
        return self.edit_with_keep_mask(
            framed, keep, kwargs.pop("class_label", None), kwargs.pop("num_images", 1), **kwargs
        )

    @torch.no_grad()
    def edit_with_keep_mask(
        self,
        prepared: PreparedImage,
        keep_mask: torch.Tensor,
        class_label: int | None = None,
        num_images: int = 1,
        prompt: str | None = None,
        **sampling,
    ) -> EditOutput:
        """Sample with the image's tokens forced wherever ``keep_mask`` (side, side) is True (per-scale masks
        follow the official bilinear-resize recipe)."""
        indices = self.tokenizer.encode(prepared.tensor.to(self.device))
        sides = self.transformer.config.scale_sides
        constraint = KeepTokensConstraint(
            indices, scale_keep_masks(keep_mask.to(self.device), sides), self.tokenizer.quantizer
        )
        out = self(
            **self.edit_condition(class_label, prompt),
            num_images_per_prompt=num_images,
            constraint=constraint,
            **sampling,
        )
        return EditOutput(
            images=out.images,
            tokens=out.tokens,
            class_labels=out.class_labels,
            prompts=out.prompts,
            keep_mask=keep_mask,
            prepared=prepared,
        )

    def edit_condition(self, class_label: int | None, prompt: str | None) -> dict:
        """What an edit conditions the regenerated part on: the class, or the null class."""
        if prompt is not None:
            raise ValueError("this pipeline is class-conditional; edit with class_label (prompts need a text pipeline)")
        if class_label is None:
            return {"class_labels": [self.transformer.config.null_class_id]}
        return {"class_labels": self.class_ids([class_label])}


def normalise_name(name: str) -> str:
    """Class names match ignoring case and the difference between spaces, '-' and '_' ("ankle_boot")."""
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


def check_index(index: dict, path: Path) -> None:
    """Refuse a pipeline.json with unknown entries or entries of the wrong JSON type (one clear line)."""
    unknown = sorted(set(index) - set(PIPELINE_KEYS))
    if unknown:
        raise ValueError(f"{path} has unknown entries {unknown}; known: {sorted(PIPELINE_KEYS)}")
    for key, kind in PIPELINE_KEYS.items():
        if key in index and not isinstance(index[key], kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise TypeError(f"{path}: {key!r} must be a JSON {expected}, got {index[key]!r}")


PIPELINE_CLASSES[Pipeline.__name__] = Pipeline
